"""The promises README makes about where a setting comes from: defaults < environment < flags <
Python keywords, on the `serve` command line as it is parsed; Weaviate's old container variables
ENABLE_CUDA/CUDA_CORE; and the boolean and list settings that switch behaviour off or on
(`--no-text-trim`, `--cache-kinds`, `--cache-size 0`)."""

from __future__ import annotations

import pytest

from imagebind_vectorizer.cli import build_parser
from imagebind_vectorizer.errors import ConfigError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.settings import Settings


def serve_settings(argv: list[str], env: dict[str, str], **keywords: object) -> Settings:
    return Settings.load(build_parser().parse_args(["serve", *argv]), env=env, **keywords)


def test_defaults_then_environment_then_flags_then_keywords() -> None:
    """Four settings, each set on one more level than the one before: each takes its value from
    the highest level that sets it."""
    env = {"IMAGEBIND_QUEUE_SIZE": "11", "IMAGEBIND_MAX_BATCH_SIZE": "12", "IMAGEBIND_MAX_WAIT_MS": "13"}
    settings = serve_settings(["--max-batch-size", "22", "--max-wait-ms", "23"], env, max_wait_ms=33.0)
    assert settings.cache_size == Settings().cache_size == 10_000  # default
    assert settings.queue_size == 11  # environment over default
    assert settings.max_batch_size == 22  # flag over environment
    assert settings.max_wait_ms == 33.0  # keyword over flag
    # and a flag that is not given leaves the environment's value in place (flags default to None)
    assert serve_settings([], env).max_batch_size == 12


def test_weaviates_legacy_container_variables_select_the_gpu() -> None:
    assert serve_settings([], {"ENABLE_CUDA": "true", "CUDA_CORE": "cuda:1"}).device == "cuda:1"
    assert serve_settings([], {"ENABLE_CUDA": "1"}).device == "cuda:0"  # without CUDA_CORE: the first GPU
    assert serve_settings([], {"ENABLE_CUDA": "false", "CUDA_CORE": "cuda:1"}).device == "cpu"
    assert serve_settings([], {"CUDA_CORE": "cuda:1"}).device == "cpu"  # CUDA_CORE alone selects nothing
    # our own variable and the flag win over the legacy pair
    legacy = {"ENABLE_CUDA": "true", "CUDA_CORE": "cuda:1"}
    assert serve_settings([], {**legacy, "IMAGEBIND_DEVICE": "cpu"}).device == "cpu"
    assert serve_settings(["--device", "cpu"], legacy).device == "cpu"


def test_text_trim_can_be_switched_off_by_flag_or_environment() -> None:
    assert serve_settings([], {}).text_trim is True
    assert serve_settings(["--no-text-trim"], {}).text_trim is False
    assert serve_settings([], {"IMAGEBIND_TEXT_TRIM": "0"}).text_trim is False
    assert serve_settings(["--text-trim"], {"IMAGEBIND_TEXT_TRIM": "off"}).text_trim is True


def test_cache_kinds_and_a_zero_cache_size_decide_what_is_cached() -> None:
    assert serve_settings([], {}).cached_kinds == {InputKind.TEXT}
    assert serve_settings(["--cache-kinds", "image,audio"], {}).cached_kinds == {InputKind.IMAGE, InputKind.AUDIO}
    assert serve_settings([], {"IMAGEBIND_CACHE_KINDS": "video"}).cached_kinds == {InputKind.VIDEO}
    assert serve_settings(["--cache-size", "0", "--cache-kinds", "text,image"], {}).cached_kinds == frozenset()
    with pytest.raises(ConfigError, match="cache_size"):
        serve_settings(["--cache-size", "-1"], {})


def test_torch_threads_and_logging_settings_come_from_flags_and_environment() -> None:
    env = {"IMAGEBIND_TORCH_THREADS": "3", "IMAGEBIND_LOG_FORMAT": "text", "IMAGEBIND_LOG_LEVEL": "debug"}
    from_env = serve_settings([], env)
    assert (from_env.torch_threads, from_env.log_format, from_env.log_level) == (3, "text", "debug")
    flagged = serve_settings(["--torch-threads", "1", "--log-format", "json", "--log-level", "warning"], env)
    assert (flagged.torch_threads, flagged.log_format, flagged.log_level) == (1, "json", "warning")
    with pytest.raises(SystemExit):
        serve_settings(["--log-format", "xml"], {})
