"""The `/vectorize` body parser that cuts long strings out before JSON parsing: it must accept and
refuse exactly what a plain `orjson.loads` + base64 parse does, whatever the string lengths,
escapes and slice boundaries (no server needed)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random

import orjson
import pytest

from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.server import vectorize_json
from imagebind_vectorizer.server.vectorize_json import REQUEST_FIELDS, BodyLimits, parse_vectorize_body

LIMITS = BodyLimits(max_items=64, max_item_bytes=1 << 30, max_text_chars=100_000)


def naive(body: bytes, limits: BodyLimits = LIMITS) -> dict[InputKind, list[bytes | str]]:
    """The oracle: the whole body through orjson, then each media string through base64."""
    payload = orjson.loads(body)
    if not isinstance(payload, dict) or set(payload) - set(REQUEST_FIELDS):
        raise ValueError("not an object of known fields")
    out: dict[InputKind, list[bytes | str]] = {}
    lists = {f: payload[f] for f in REQUEST_FIELDS if payload.get(f) is not None}
    if any(not isinstance(v, list) for v in lists.values()) or sum(map(len, lists.values())) > limits.max_items:
        raise ValueError("not lists, or too many items")
    for field, values in lists.items():
        kind = REQUEST_FIELDS[field]
        if any(not isinstance(v, str) for v in values):
            raise ValueError("not a string")
        if kind is InputKind.TEXT:
            out[kind] = list(values)
            continue
        decoded = []
        for value in values:
            if not value:
                raise ValueError("empty")
            if value.startswith("data:"):  # the server before the long-string cut
                comma = value.find(",")
                if comma < 0 or ";base64" not in value[:comma]:
                    raise ValueError("data URI")
                value = value[comma + 1:]
            decoded.append(binascii.a2b_base64(value.encode(), strict_mode=True))
        out[kind] = decoded
    return out


def parse(body: bytes, limits: BodyLimits = LIMITS) -> dict[InputKind, list[bytes | str]]:
    return asyncio.run(parse_vectorize_body(body, limits))


def same_verdict(body: bytes) -> None:
    try:
        expected: object = naive(body)
    except (ValueError, binascii.Error, UnicodeError):
        expected = InputError
    try:
        got: object = parse(body)
    except InputError:
        got = InputError
    assert got == expected, body[:200]


@pytest.fixture(params=[(8, 12), (1, 4)], ids=["long>=8", "every-string-long"])
def small_slices(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny strings count as long (keys too) and slices hold a few bytes: every boundary gets crossed."""
    monkeypatch.setattr(vectorize_json, "LONG_STRING", request.param[0])
    monkeypatch.setattr(vectorize_json, "SLICE", request.param[1])


def random_body(rng: random.Random) -> bytes:
    def text() -> str:
        alphabet = 'ab "\\/\n\t\u00e9\u2028\U0001f600<>&'
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))

    def media() -> str:
        data = base64.b64encode(rng.randbytes(rng.randrange(1, 40))).decode()
        return ("data:image/png;base64," + data) if rng.random() < 0.2 else data

    payload = {}
    for field, kind in REQUEST_FIELDS.items():
        if rng.random() < 0.5:
            payload[field] = [text() if kind is InputKind.TEXT else media() for _ in range(rng.randrange(0, 4))]
    raw = json.dumps(payload, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1]))
    if rng.random() < 0.3:
        raw = raw.replace("/", "\\/")  # PHP-style escaped slashes
    body = raw.encode()
    if rng.random() < 0.3:  # damage it
        at = rng.randrange(len(body))
        body = body[:at] + rng.choice([b"", b'"', b"\\", b",", b"]", b"\x01", b"\xff", b"=", b'{"a": [1]}']) \
            + body[at + 1:]
    return body


@pytest.mark.parametrize("seed", range(4))
def test_random_bodies_get_the_plain_parsers_verdict(small_slices: None, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(150):
        same_verdict(random_body(rng))


@pytest.mark.parametrize("body", [
    b"", b"   ", b"[]", b'"x"', b"{}", b'{"texts": null}', b'{"texts": "a"}', b'{"texts": [1]}',
    b'{"texts": ["a",]}', b'{"texts": ["a"]} x', b'{"texts": ["a"]', b'{"texts": ["unterminated}',
    b'{"texts": ["a"], "texts": ["b"]}', b'{"voices": []}', b'{"images": [""]}', b'{"images": ["AAA"]}',
    b'{"images": ["AA==AA=="]}', b'{"images": ["data:image/png,AAAA"]}', b'{"texts": ["\\ud800"]}',
    b'{"texts": ["tab\there"]}', b'{"texts": ["\xff\xfe"]}', b'{"images": ["QUJD\\/RA=="]}',
    b'{"texts": ["ends with a backslash \\\\"], "images": ["QUJDRA=="]}', b'{"texts": ["\\"quoted\\""]}',
])
def test_edge_cases_get_the_plain_parsers_verdict(small_slices: None, body: bytes) -> None:
    same_verdict(body)


def test_long_media_and_text_are_decoded_where_they_lie() -> None:
    image = random.Random(1).randbytes(300_000)
    body = json.dumps({"texts": ["x" * 20_000, 'with "escapes"\n'], "images": [base64.b64encode(image).decode()],
                       "audio": ["data:audio/wav;base64," + base64.b64encode(image[:9000]).decode()]}).encode()
    parsed = parse(body)
    assert parsed == {InputKind.TEXT: ["x" * 20_000, 'with "escapes"\n'], InputKind.IMAGE: [image],
                      InputKind.AUDIO: [image[:9000]]}


def test_the_item_limit_is_checked_before_the_body_is_walked() -> None:
    with pytest.raises(InputError, match="max_request_items"):
        parse(b'{"texts": [' + b'"ab",' * 1_000_000 + b'"ab"]}')
    with pytest.raises(InputError, match="holds 65 items"):
        parse(json.dumps({"texts": ["a"] * 30, "images": ["QUJD"] * 35}).encode())
    assert len(parse(json.dumps({"texts": ["a"] * 64}).encode())[InputKind.TEXT]) == 64


def test_json_outside_long_strings_is_bounded() -> None:
    with pytest.raises(InputError, match="MiB of JSON besides"):
        parse(b'{"texts": [' + b" " * (vectorize_json.SKELETON_LIMIT + 10) + b'"a"]}')
    with pytest.raises(InputError, match="MiB of JSON besides"):
        parse(b'{"texts": ["' + b'\\"' * vectorize_json.SKELETON_LIMIT + b'"]}')


def test_items_over_the_size_limits_are_refused_before_decoding() -> None:
    limits = BodyLimits(max_items=4, max_item_bytes=1000, max_text_chars=100)
    with pytest.raises(InputError, match="over the limit of 1000") as caught:
        parse(json.dumps({"images": ["QUJD", "A" * 8000]}).encode(), limits)
    assert caught.value.field == "images" and caught.value.index == 1
    with pytest.raises(InputError, match="more than 100 characters"):
        parse(json.dumps({"texts": ["y" * 5000]}).encode(), limits)


def test_the_admission_hook_sees_the_counts_before_any_item_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    body = json.dumps({"texts": ["a", "b"], "images": ["QUJD"] * 3}).encode()
    decoded = []
    monkeypatch.setattr(vectorize_json.binascii, "a2b_base64", lambda *a, **k: decoded.append(a) or b"")

    def refuse(counts: object) -> None:
        assert counts == {InputKind.TEXT: 2, InputKind.IMAGE: 3}
        raise OverflowError("no room")

    with pytest.raises(OverflowError):
        asyncio.run(parse_vectorize_body(body, LIMITS, before_decoding=refuse))
    assert decoded == []
