"""Fetching the checkpoint: resumable, atomic, size- and sha256-checked, with a progress bar.

The finished file gets a sidecar `<file>.sha256` ("<hex>  <size>") so later start-ups know the
digest without re-reading gigabytes."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from imagebind_vectorizer.errors import CheckpointError

log = logging.getLogger(__name__)

OFFICIAL_CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"
CHUNK = 1 << 20


@dataclass(frozen=True)
class DigestRecord:
    sha256: str
    size: int


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def read_sidecar(path: Path) -> DigestRecord | None:
    """The recorded digest, if it was written for a file of the current size."""
    try:
        digest, size = sidecar_path(path).read_text().split()[:2]
        record = DigestRecord(digest.lower(), int(size))
    except (OSError, ValueError):
        return None
    try:
        return record if path.stat().st_size == record.size else None
    except OSError:
        return None


def write_sidecar(path: Path, record: DigestRecord) -> None:
    tmp = sidecar_path(path).with_suffix(".tmp")
    try:
        tmp.write_text(f"{record.sha256}  {record.size}\n")
        os.replace(tmp, sidecar_path(path))
    except OSError as exc:  # a read-only model directory is fine; we just recompute next time
        log.info("could not record checkpoint digest next to %s: %s", path, exc)


def sha256_file(path: Path) -> DigestRecord:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK * 8):
            h.update(chunk)
            size += len(chunk)
    return DigestRecord(h.hexdigest(), size)


def _progress(total: int | None, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc, disable=not enabled, mininterval=1.0)


def download(url: str, dest: Path, *, sha256: str | None = None, size: int | None = None,
             progress: bool = True, attempts: int = 5, timeout: float = 60.0) -> DigestRecord:
    """Download `url` to `dest`. A partial `dest.part` from an interrupted run is resumed with an
    HTTP Range request; the file appears at `dest` only once complete and verified."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    expected = sha256.lower() if sha256 else None
    last_error: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            total = _fetch_into(url, part, progress=progress, timeout=timeout)
            if total is not None and part.stat().st_size < total:
                raise http.client.IncompleteRead(b"", total - part.stat().st_size)
            break
        except _Restart:
            part.unlink(missing_ok=True)
            last_error = None
            continue
        except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500 and exc.code != 429:
                raise CheckpointError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from exc
            last_error = exc
            log.warning("download of %s interrupted (attempt %d/%d): %s", url, attempt, attempts, exc)
            time.sleep(min(2 ** attempt, 30) * 0.1)
    else:
        raise CheckpointError(f"downloading {url} failed after {attempts} attempts: {last_error}")

    got = part.stat().st_size
    for label, want in (("server-reported size", total), ("expected size", size)):
        if want is not None and got != want:
            part.unlink(missing_ok=True)
            raise CheckpointError(f"downloaded {got} bytes from {url} but the {label} is {want} bytes; "
                                  "the partial file was removed, run again to retry")
    record = sha256_file(part)
    if expected and record.sha256 != expected:
        part.unlink(missing_ok=True)
        raise CheckpointError(f"checksum mismatch for {url}: sha256 {record.sha256}, expected {expected}; "
                              "the file was removed")
    os.replace(part, dest)
    write_sidecar(dest, record)
    log.info("downloaded %s (%d bytes, sha256 %s)", dest, record.size, record.sha256)
    return record


class _Restart(Exception):
    """The server ignored our Range request: start from zero."""


def _fetch_into(url: str, part: Path, *, progress: bool, timeout: float) -> int | None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "imagebind-vectorizer"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # range past the end: our partial file is stale or complete
            raise _Restart from exc
        raise
    with response:
        if have and response.status != 206:
            raise _Restart
        length = response.headers.get("Content-Length")
        total: int | None
        if response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            total = int(content_range.rsplit("/", 1)[1]) if "/" in content_range and \
                not content_range.endswith("*") else None
        else:
            have = 0
            total = int(length) if length is not None else None
        mode = "ab" if have else "wb"
        with open(part, mode) as out, _progress(total, have, part.name.removesuffix(".part"), progress) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    return total
