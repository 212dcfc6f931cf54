"""The `/vectorize` JSON body -> items per input kind, without stalling the event loop.

A body may be 256 MB. orjson and base64 (binascii) hold the GIL for their whole call (about 0.4 s
and 0.5 s per 64 MB on this project's 2-core VM), so a worker thread would not keep the loop
free, and `/.well-known/live` must answer within a second whatever arrives. The body's schema is
tiny (an object of string lists), so its long strings are cut out before JSON parsing:

1. Walk the strings with `bytes.find` (C speed, a few MB per event-loop turn). A string longer than
   `LONG_STRING` with no backslash is left in the body and stands in the JSON as a placeholder
   (a random per-request marker, which a client cannot forge); everything else, the "skeleton",
   is kept.
2. orjson parses the skeleton (at most `SKELETON_LIMIT` bytes), so JSON syntax, nesting,
   duplicate keys and escapes are exactly orjson's.
3. The item count is checked before any item is decoded, then each long string is decoded
   where it lies: base64 in slices with a yield between them, text as strict UTF-8 with no
   control characters (what JSON allows in a string without escapes).

Every step is bounded before it starts: strings are counted as they are found, and a request with
more than `max_request_items` items is refused before the rest of the body is walked."""

from __future__ import annotations

import asyncio
import binascii
import enum
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson

from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import WEAVIATE_KIND_ORDER, InputKind
from imagebind_vectorizer.settings import Settings

#: request field -> input kind, in the order Weaviate's Go client declares them
REQUEST_FIELDS: dict[str, InputKind] = {kind.facts.request_key: kind for kind in WEAVIATE_KIND_ORDER}
#: strings at least this long without a backslash are decoded in place, not by orjson
LONG_STRING = 4096
#: the most JSON left for orjson once the long strings are cut out (parsed in one call: ~10 ms)
SKELETON_LIMIT = 4 * 1024 * 1024
#: bytes scanned or decoded per event-loop turn (a multiple of 4: whole base64 quanta)
SLICE = 4 * 1024 * 1024
_CONTROL = bytes(range(32))


@dataclass(frozen=True)
class _Span:
    """A long string left in the body: its content's bounds, and whether it writes `/` as `\\/`."""

    start: int
    end: int
    escaped_slashes: bool


@dataclass(frozen=True)
class BodyLimits:
    max_items: int
    max_item_bytes: int
    max_text_chars: int

    @classmethod
    def of(cls, settings: Settings) -> BodyLimits:
        return cls(settings.max_request_items, settings.max_item_bytes, settings.max_text_chars)


class _Turns:
    """Counts work done on the event loop and yields to it after every `SLICE` bytes of it."""

    def __init__(self) -> None:
        self.work = 0

    async def did(self, amount: int) -> None:
        self.work += amount
        if self.work >= SLICE:
            self.work = 0
            await asyncio.sleep(0)


def _json_error(message: str) -> InputError:
    return InputError(f"request body is not valid JSON: {message}", reason="json")


async def parse_vectorize_body(body: bytes | bytearray, limits: BodyLimits, *,
                               before_decoding: Callable[[Mapping[InputKind, int]], None] | None = None,
                               ) -> dict[InputKind, list[bytes | str]]:
    """Items per kind. `before_decoding` gets the item count per kind once the JSON is parsed and
    before any item is decoded: where the engine can tell that much work cannot be admitted, it
    raises (429) and nothing is decoded."""
    if not body:
        raise InputError("empty request body; expected a JSON object", reason="json")
    turns = _Turns()
    marker = "\x00ibv-" + secrets.token_hex(8) + "-"
    skeleton, long_strings = await _cut_long_strings(body, marker, limits, turns)
    try:
        payload = orjson.loads(skeleton)
    except orjson.JSONDecodeError as exc:
        raise _json_error(str(exc)) from None
    if not isinstance(payload, dict):
        raise InputError("request body must be a JSON object", reason="json")
    if any(key.startswith(marker) for key in payload):  # a long key: the object as orjson would build it
        payload = {(_in_place(body, long_strings[key], "keys", 0) if key.startswith(marker) else key): value
                   for key, value in payload.items()}
    unknown = sorted(set(payload) - set(REQUEST_FIELDS))
    if unknown:
        shown = [name if len(name) < 100 else name[:100] + "..." for name in unknown[:10]]
        raise InputError(f"unknown field(s) {shown}; expected any of {list(REQUEST_FIELDS)}", reason="json")
    lists: dict[str, list[object]] = {}
    for field in REQUEST_FIELDS:
        values = payload.get(field)
        if values is None:
            continue
        if not isinstance(values, list):
            raise InputError("must be a list of strings", reason="json", field=field)
        lists[field] = values
    count = sum(len(values) for values in lists.values())
    if count > limits.max_items:
        raise InputError(f"the request holds {count} items, more than the limit of {limits.max_items} "
                         "(max_request_items); split it into smaller requests", reason="too_many")
    if before_decoding is not None:
        before_decoding({REQUEST_FIELDS[field]: len(values) for field, values in lists.items()})
    request: dict[InputKind, list[bytes | str]] = {}
    for field, values in lists.items():
        kind = REQUEST_FIELDS[field]
        items: list[bytes | str] = []
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise InputError("must be a string", reason="json", field=field, index=index)
            span = long_strings.get(value) if value.startswith(marker) else None
            if kind is InputKind.TEXT:
                items.append(_text_in_place(body, span, field, index, limits) if span else value)
                await turns.did(span.end - span.start if span else len(value))
                continue
            raw = memoryview(body)[span.start:span.end] if span else value.encode("utf-8")
            items.append(await decode_media(raw, field, index, limits, turns, in_place=span is not None,
                                            escaped_slashes=span is not None and span.escaped_slashes))
        request[kind] = items
    return request


async def _cut_long_strings(body: bytes | bytearray, marker: str, limits: BodyLimits,
                            turns: _Turns) -> tuple[bytes, dict[str, _Span]]:
    """The body with its long plain strings replaced by placeholders, and where each one lies."""
    view = memoryview(body)
    pieces: list[bytes | memoryview] = []
    long_strings: dict[str, _Span] = {}
    size = strings = 0
    max_strings = limits.max_items + 2 * len(REQUEST_FIELDS)  # items, keys and a little slack
    pos, end = 0, len(body)
    while True:
        # the JSON between strings must fit the skeleton: look for the next quote only that far
        budget = SKELETON_LIMIT - size
        quote = body.find(b'"', pos, min(end, pos + budget + 1))
        gap_end = quote if quote >= 0 else min(end, pos + budget + 1)
        await turns.did(gap_end - pos)
        if gap_end - pos > budget:
            raise _skeleton_too_large()
        pieces.append(view[pos:gap_end])
        size += gap_end - pos
        if quote < 0:
            break
        strings += 1
        if strings > max_strings:
            raise InputError(f"the request holds more than {limits.max_items} items, the limit "
                             "(max_request_items); split it into smaller requests", reason="too_many")
        close, escapes = await _string_end(body, quote, turns)
        if escapes is not _Escapes.OTHER and close - quote - 1 >= LONG_STRING:
            placeholder = marker + str(len(long_strings))
            long_strings[placeholder] = _Span(quote + 1, close, escapes is _Escapes.SLASHES)
            piece: bytes | memoryview = orjson.dumps(placeholder)
        else:
            piece = view[quote:close + 1]
        size += len(piece)
        if size > SKELETON_LIMIT:
            raise _skeleton_too_large()
        pieces.append(piece)
        pos = close + 1
    return b"".join(pieces), long_strings


def _skeleton_too_large() -> InputError:
    return InputError(f"the request body holds more than {SKELETON_LIMIT // (1024 * 1024)} MiB of JSON besides "
                      "its long plain strings (whitespace, numbers, strings with escape sequences); send texts "
                      "as strings and media as base64 strings", reason="json")


class _Escapes(enum.Enum):
    NONE = "none"
    SLASHES = "slashes"  # only the `\\/` some encoders (PHP's) write for `/`
    OTHER = "other"


async def _string_end(body: bytes | bytearray, start: int, turns: _Turns) -> tuple[int, _Escapes]:
    """Where the JSON string opening at `start` closes, and which escapes it holds."""
    close = backslash = -1
    for window in range(start + 1, len(body), SLICE):  # a slice per turn: a string may be 200 MB
        stop = min(window + SLICE, len(body))
        close = body.find(b'"', window, stop)
        if backslash < 0:
            backslash = body.find(b"\\", window, close if close >= 0 else stop)
        await turns.did(2 * (stop - window))
        if close >= 0:
            break
    if close < 0:
        raise _json_error(f"unterminated string starting at byte {start}")
    if backslash < 0:
        return close, _Escapes.NONE
    if body.count(b"\\", backslash, close) == body.count(b"\\/", backslash, close):
        await turns.did(2 * (close - backslash))
        return close, _Escapes.SLASHES
    # Escapes: let the standard library's JSON string scanner (C) find the end, over a window
    # that doubles until it holds the whole string. A string with escapes stays in the skeleton,
    # so a window past its limit means the body is refused anyway.
    window = 4096
    while True:
        chunk = bytes(body[start + 1:start + 1 + window])
        await turns.did(len(chunk))
        text = chunk.decode("utf-8", "surrogateescape")  # a character cut at the window's end is kept
        try:
            # not strict: control characters are orjson's to judge, in the skeleton
            _, after = json.decoder.scanstring(text, 0, False)  # type: ignore[attr-defined]
        except json.JSONDecodeError:
            if start + 1 + window >= len(body):
                raise _json_error(f"unterminated or invalid string starting at byte {start}") from None
            if window > SKELETON_LIMIT:
                raise _skeleton_too_large() from None
            window *= 2
            continue
        return start + len(text[:after].encode("utf-8", "surrogateescape")), _Escapes.OTHER


def _text_in_place(body: bytes | bytearray, span: _Span, field: str, index: int, limits: BodyLimits) -> str:
    if span.end - span.start > 4 * limits.max_text_chars:  # UTF-8 takes at most 4 bytes per character
        raise InputError(f"text has more than {limits.max_text_chars} characters, the limit",
                         reason="too_large", field=field, index=index)
    return _in_place(body, span, field, index)


def _in_place(body: bytes | bytearray, span: _Span, field: str, index: int) -> str:
    raw = bytes(body[span.start:span.end])
    if span.escaped_slashes:
        raw = raw.replace(b"\\/", b"/")
    return _check_json_string(raw, field, index)


def _check_json_string(raw: bytes, field: str, index: int) -> str:
    """Raw bytes of a JSON string without escapes, as text: strict UTF-8, no control characters."""
    if len(raw.translate(None, _CONTROL)) != len(raw):
        raise _json_error(f"{field}[{index}]: control character in a string")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _json_error(f"{field}[{index}]: {exc}") from None


async def decode_media(raw: bytes | memoryview, field: str, index: int, limits: BodyLimits,
                       turns: _Turns | None = None, *, in_place: bool = False, escaped_slashes: bool = False) -> bytes:
    """Standard base64 (what Weaviate stores for blobs; a `data:...;base64,` prefix is tolerated),
    decoded a slice at a time. `in_place`: `raw` is a JSON string's bytes as sent (no escapes, or
    `escaped_slashes`: `/` written as `\\/`), not a parsed value."""
    turns = turns or _Turns()
    if not len(raw):
        raise InputError("empty string", reason="empty", field=field, index=index)
    if escaped_slashes:
        raw = await _unescape_slashes(raw, turns)
    if bytes(raw[:5]) == b"data:":
        head = bytes(raw[:1024])
        comma = head.find(b",")
        if comma < 0 or b";base64" not in head[:comma]:
            raise InputError("a data: URI must be base64-encoded", reason="base64", field=field, index=index)
        if in_place:  # raw JSON string bytes: what the base64 check below will not see must still be JSON
            _check_json_string(head[:comma], field, index)
        raw = raw[comma + 1:]
    decoded_size = len(raw) // 4 * 3
    if decoded_size > limits.max_item_bytes:
        raise InputError(f"input is about {decoded_size} bytes, over the limit of {limits.max_item_bytes}",
                         reason="too_large", field=field, index=index)
    parts = []
    try:
        for offset in range(0, len(raw), SLICE):
            part = raw[offset:offset + SLICE]
            if offset + SLICE < len(raw) and bytes(part[-1:]) == b"=":
                raise binascii.Error("Excess data after padding")
            parts.append(binascii.a2b_base64(part, strict_mode=True))
            await turns.did(len(part))
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"invalid base64: {exc}", reason="base64", field=field, index=index) from None
    return b"".join(parts)


async def _unescape_slashes(raw: bytes | memoryview, turns: _Turns) -> bytes:
    parts, start = [], 0
    while start < len(raw):
        stop = min(start + SLICE, len(raw))
        if stop < len(raw) and raw[stop - 1] == 0x5C:  # never split a `\\/` pair
            stop += 1
        parts.append(bytes(raw[start:stop]).replace(b"\\/", b"/"))
        await turns.did(stop - start)
        start = stop
    return b"".join(parts)
