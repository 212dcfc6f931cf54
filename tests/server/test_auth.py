"""The authenticator's parts on their own: key rings (fixed keys, a key file re-read when it changes,
Kubernetes-style symlink swaps, rotation, fail-closed on a bad file), parsing Authorization values,
and which routes each ring guards. The transports' use of them is in test_security.py."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

import pytest

from imagebind_vectorizer.errors import ConfigError
from imagebind_vectorizer.server.auth import (
    MIN_KEY_CHARS,
    HttpAccess,
    KeyRing,
    RejectLog,
    generate_key,
    parse_keys,
    presented_key,
)
from imagebind_vectorizer.server.watch import RELOAD_INTERVAL_S

OLD, NEW, OTHER = "old-key-0123456789abcdef", "new-key-0123456789abcdef", "other-key-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = RELOAD_INTERVAL_S) -> None:
        self.now += seconds


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_generated_keys_are_long_random_and_url_safe() -> None:
    keys = {generate_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(len(k) >= 40 and parse_keys(k, "test") == (k,) for k in keys)


@pytest.mark.parametrize("bad", ["short-key", "has a space in it!!", "colon:inside-the-key", "slash/inside/the/key",
                                 "percent%40encoded-key", "é-non-ascii-key-0123456"])
def test_keys_that_cannot_sit_verbatim_in_a_url_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        KeyRing([bad])
    assert bad not in str(info.value)


def test_key_lists_allow_commas_newlines_and_comments() -> None:
    text = f"# rotated on Monday\n{OLD}, {NEW}\n\n  {OTHER}  \n"
    assert parse_keys(text, "test") == (OLD, NEW, OTHER)


def test_fixed_keys_match_only_themselves() -> None:
    ring = KeyRing([OLD, NEW])
    assert ring.enabled and len(ring) == 2
    assert ring.matches(OLD) and ring.matches(NEW)
    for wrong in (OTHER, "", OLD + "x", OLD[:-1], OLD.upper()):
        assert not ring.matches(wrong), wrong
    assert not KeyRing().enabled


def test_a_key_file_is_reread_when_it_changes_so_keys_rotate_without_restart(tmp_path: Path) -> None:
    clock = Clock()
    key_file = tmp_path / "keys"
    key_file.write_text(f"{OLD}\n")
    ring = KeyRing(file=key_file, clock=clock)
    assert ring.matches(OLD) and not ring.matches(NEW)

    key_file.write_text(f"{OLD}\n{NEW}\n")  # step 1: both valid while clients move
    assert not ring.matches(NEW), "looked at no more than once per interval"
    clock.advance()
    assert ring.matches(NEW) and ring.matches(OLD)

    key_file.write_text(f"{NEW}\n")  # step 2: the old key is retired
    clock.advance()
    assert ring.matches(NEW) and not ring.matches(OLD)


def test_a_kubernetes_secret_volume_swap_is_noticed(tmp_path: Path) -> None:
    """A Secret volume holds `..data -> ..<timestamp>/` and `api-keys -> ..data/api-keys`; an update
    writes a new timestamped folder and renames a new `..data` symlink over the old one."""
    clock = Clock()
    volume = tmp_path / "secret"
    first = volume / "..2026_01_01"
    first.mkdir(parents=True)
    (first / "api-keys").write_text(OLD)
    (volume / "..data").symlink_to(first.name)
    (volume / "api-keys").symlink_to("..data/api-keys")
    ring = KeyRing(file=volume / "api-keys", clock=clock)
    assert ring.matches(OLD)

    second = volume / "..2026_02_01"
    second.mkdir()
    (second / "api-keys").write_text(NEW)
    (volume / "..data_tmp").symlink_to(second.name)
    os.replace(volume / "..data_tmp", volume / "..data")
    clock.advance()
    assert ring.matches(NEW) and not ring.matches(OLD)


@pytest.mark.parametrize("breakage", ["empty", "deleted", "bad key"])
def test_a_broken_key_file_keeps_the_previous_keys(tmp_path: Path, breakage: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    key_file = tmp_path / "keys"
    key_file.write_text(OLD)
    ring = KeyRing(file=key_file, clock=clock)
    if breakage == "empty":
        key_file.write_text("# nothing yet\n")
    elif breakage == "deleted":
        key_file.unlink()
    else:
        key_file.write_text("tiny\n")
    clock.advance()
    with caplog.at_level(logging.WARNING):
        assert ring.matches(OLD), "a rotation caught half-way must not lock everyone out"
        assert not ring.matches("")  # ... nor open the server
    assert "keeping the previous keys" in caplog.text
    assert OLD not in caplog.text


@pytest.mark.parametrize("content", [None, "", "# only a comment\n"])
def test_a_missing_or_empty_key_file_at_start_up_is_an_error(tmp_path: Path, content: str | None) -> None:
    key_file = tmp_path / "keys"
    if content is not None:
        key_file.write_text(content)
    with pytest.raises(ConfigError, match=str(key_file)):
        KeyRing(file=key_file)


def test_fixed_and_file_keys_are_both_accepted(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(NEW)
    ring = KeyRing([OLD], file=key_file)
    assert ring.matches(OLD) and ring.matches(NEW) and len(ring) == 2


@pytest.mark.parametrize(("header", "key"), [
    (f"Bearer {OLD}", OLD),
    (f"bearer   {OLD}  ", OLD),
    (basic("weaviate", OLD), OLD),
    (basic("", OLD), OLD),  # Go sends "user:" pairs as they are; the user name is ignored
    (basic("anyone", "pass:with:colons"), "pass:with:colons"),
    (None, None), ("", None), ("Bearer", None), ("Bearer ", None), (f"Token {OLD}", None),
    (basic("weaviate", ""), None), ("Basic !!notbase64!!", None),
    ("Basic " + base64.b64encode(b"nocolon").decode(), None),
    ("Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(), None),
])
def test_presented_key(header: str | None, key: str | None) -> None:
    assert presented_key(header) == key


def test_routes_and_their_rings() -> None:
    api, scraper = KeyRing([OLD]), KeyRing([OTHER])
    default = HttpAccess(api)
    assert default.ring_for("/vectorize") is api and default.ring_for("/meta") is api
    assert default.ring_for("/.well-known/ready") is None and default.ring_for("/.well-known/live") is None
    assert default.ring_for("/metrics") is api
    assert default.ring_for("") is api, "unknown routes need a key too"
    assert HttpAccess(api, probes_open=False).ring_for("/.well-known/ready") is api
    assert HttpAccess(api, scraper).ring_for("/metrics") is scraper
    assert HttpAccess(api, scraper).ring_for("/vectorize") is api
    assert HttpAccess(api, metrics_open=True).ring_for("/metrics") is None
    only_metrics = HttpAccess(KeyRing(), scraper)
    assert only_metrics.ring_for("/metrics") is scraper and only_metrics.ring_for("/vectorize") is None
    assert not HttpAccess(KeyRing()).enabled


def test_rejections_are_logged_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    reject_log = RejectLog(interval_s=10, clock=clock)
    with caplog.at_level(logging.WARNING):
        for _ in range(100):
            reject_log.rejected("http", "10.0.0.9", "POST /vectorize", "wrong API key")
        clock.advance(10)
        reject_log.rejected("http", "10.0.0.9", "POST /vectorize", "wrong API key")
    records = [r for r in caplog.records if r.name.endswith("auth")]
    assert len(records) == 2
    assert records[1].fields["similar_rejections_not_logged"] == 99  # type: ignore[attr-defined]


def test_min_key_length_is_documented_in_the_error() -> None:
    with pytest.raises(ConfigError, match=f"need {MIN_KEY_CHARS}"):
        KeyRing(["x" * (MIN_KEY_CHARS - 1)])
