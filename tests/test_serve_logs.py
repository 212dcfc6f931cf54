"""`serve`'s log as README promises it: JSON lines by default (`--log-format text` for humans), at
`--log-level`, and a start-up log that names the device, the dtype and why, the warm-up time of
each kind, the encoders, checkpoint, preprocessing profile and output scaling. Real `serve`
processes on the tiny checkpoint; the environment sets the opposite of the flags, which win."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from imagebind_vectorizer import notices
from imagebind_vectorizer.weaviate.local import LocalVectorizer

#: logs.TextFormatter's line start: "2026-01-02 03:04:05,678 LEVEL logger: message"
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


def run_server(args: list[str], env: dict[str, str], log_path: Path) -> str:
    """Start `serve ARGS`, wait for readiness, stop it (SIGTERM); its whole log."""
    server = LocalVectorizer(args, log_path=log_path, python=sys.executable, extra_env=env)
    with server:
        pass
    assert server.process is not None and server.process.returncode == 0, server.log_tail()
    return log_path.read_text(errors="replace")


def test_json_lines_at_info_with_the_start_up_record(tiny_checkpoint: Path, tiny_config_path: Path,
                                                     tmp_path: Path) -> None:
    log = run_server(["--checkpoint", str(tiny_checkpoint), "--model-config", str(tiny_config_path),
                      "--dtype", "float32", "--modalities", "text,audio",
                      "--log-format", "json", "--log-level", "info"],
                     {"IMAGEBIND_LOG_FORMAT": "text", "IMAGEBIND_LOG_LEVEL": "warning"}, tmp_path / "serve.log")
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line is one JSON object
    assert all({"ts", "level", "logger", "msg"} <= entry.keys() for entry in entries)
    assert {entry["level"] for entry in entries} <= {"info", "warning", "error"}
    by_message: dict[str, list[dict]] = {}
    for entry in entries:
        by_message.setdefault(entry["msg"], []).append(entry)

    ready = by_message["ready"][0]
    assert ready["device"] == "cpu" and ready["dtype"] == "float32" and ready["dtype_reason"]
    assert ready["modalities"] == ["text", "audio"]
    assert ready["checkpoint"] == str(tiny_checkpoint)
    assert (ready["preprocessing"], ready["output_scaling"]) == ("official", "unit")
    assert isinstance(ready["load_seconds"], float)
    warm_ups = {entry["kind"]: entry["forward_seconds"] for entry in by_message["warm-up"]}
    assert set(warm_ups) == {"text", "audio"} and all(seconds > 0 for seconds in warm_ups.values())
    assert re.fullmatch(r"127\.0\.0\.1:\d+", by_message["listening"][0]["http"])
    assert "security" in by_message and "stopped" in by_message  # what is on, and the orderly stop


def test_text_lines_at_warning_from_the_environment(tiny_config_path: Path, tmp_path: Path) -> None:
    log = run_server(["--random-weights", "--model-config", str(tiny_config_path), "--modalities", "text"],
                     {"IMAGEBIND_LOG_FORMAT": "text", "IMAGEBIND_LOG_LEVEL": "warning"}, tmp_path / "serve.log")
    assert not any(line.startswith("{") for line in log.splitlines())
    records = [TEXT_LINE.match(line) for line in log.splitlines()]
    levels = {match.group(1) for match in records if match}
    assert levels == {"WARNING"}, log  # the random-weights warning, and no info (no "ready", no "warm-up")
    assert notices.RANDOM_WEIGHTS in log
    assert " ready" not in log and "warm-up" not in log
