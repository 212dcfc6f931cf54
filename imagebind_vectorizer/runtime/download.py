"""Fetching the checkpoint: resumable, atomic, size- and sha256-checked, with a progress bar.

The finished file gets a sidecar `<file>.sha256` ("<hex>  <size>") so later start-ups know the
digest without re-reading gigabytes.

Processes that share a cache folder (pods on one volume) take turns through `folder_lock`, so one of
them downloads and the others find the file.

The cache folder may be shared or writable by others, so nothing here opens a name it did not
create through a link: the resumable `<file>.part` and the lock file are opened with O_NOFOLLOW and
must be plain files of ours with one link, other temporary files are created exclusively under
random names, and finished files are moved into place with rename (which replaces a planted symlink
instead of following it)."""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import logging
import os
import re
import stat
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imagebind_vectorizer.errors import CheckpointError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
#: suffixes of the files this module keeps next to a checkpoint; a checkpoint may not be named so
_OWN_SUFFIXES = (".part", ".tmp", ".sha256", ".lock")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")
#: the lock file `folder_lock` takes in a cache folder (hidden, so never a checkpoint's cache name)
LOCK_NAME = ".download.lock"


@dataclass(frozen=True)
class DigestRecord:
    sha256: str
    size: int


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def read_sidecar(path: Path) -> DigestRecord | None:
    """The recorded digest, if it was written for a file of the current size, and if it can be
    trusted: the sidecar a plain file (not a link) and both it and the checkpoint owned by this user
    or root. In a folder others can write to, another user could otherwise rename a file of the same
    size over the checkpoint and leave the official digest beside it: with the digest pinned, the
    file would pass unread. An untrusted sidecar is ignored, so the file is hashed again."""
    sidecar = sidecar_path(path)
    try:
        with open(sidecar, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NOFOLLOW)) as handle:
            written_by = os.fstat(handle.fileno())
            digest, size = handle.read(1024).decode("ascii").split()[:2]
        record = DigestRecord(digest.lower(), int(size))
        checkpoint = path.stat()
    except (OSError, ValueError):
        return None
    trusted = {os.geteuid(), 0}
    if not all(stat.S_ISREG(info.st_mode) and info.st_uid in trusted for info in (written_by, checkpoint)):
        log.warning("ignoring the recorded digest of %s: it or its sidecar belongs to another user", path)
        return None
    return record if checkpoint.st_size == record.size else None


def write_sidecar(path: Path, record: DigestRecord) -> None:
    try:
        with _exclusive_temp(path.parent, path.name) as (fd, tmp):
            os.write(fd, f"{record.sha256}  {record.size}\n".encode())
            os.replace(tmp, sidecar_path(path))
    except OSError as exc:  # a read-only model directory is fine; we just recompute next time
        log.info("could not record checkpoint digest next to %s: %s", path, exc)


@contextmanager
def _exclusive_temp(folder: Path, stem: str) -> Iterator[tuple[int, str]]:
    """A new file under a random name in `folder` (O_EXCL, mode 0600); removed unless renamed away."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=".tmp")
    try:
        yield fd, tmp
    finally:
        os.close(fd)
        if os.path.lexists(tmp):
            os.unlink(tmp)


def cache_file_name(url: str) -> str:
    """The file name a download from `url` is cached under: the URL path's last segment, which must
    be a plain name (no "." or "..", no separators, not hidden, not one of our own suffixes), so no
    URL can place files outside the cache folder or over our temporary files."""
    path = urllib.parse.urlsplit(url).path.rstrip("/")
    name = urllib.parse.unquote(path.rsplit("/", 1)[-1])
    if not name:
        return "checkpoint.pth"
    if not _SAFE_NAME.fullmatch(name) or name.endswith(_OWN_SUFFIXES):
        raise CheckpointError(f"cannot cache the download from {url}: its file name {name!r} is not a plain "
                              "file name (letters, digits and ._+=- only, not starting with a dot); "
                              "download it yourself and set IMAGEBIND_CHECKPOINT to the file")
    return name


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
    if not _SAFE_NAME.fullmatch(dest.name) or dest.name.endswith(_OWN_SUFFIXES):
        raise CheckpointError(f"refusing to download to {dest}: not a plain file name")
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise CheckpointError(f"refusing to download {url}: only http and https URLs are fetched")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    expected = sha256.lower() if sha256 else None
    last_error: Exception | None = None
    fd = _open_part(part)
    try:
        for attempt in range(1, attempts + 1):
            try:
                total = _fetch_into(url, fd, part.name, progress=progress, timeout=timeout)
                if total is not None and os.fstat(fd).st_size < total:
                    raise http.client.IncompleteRead(b"", total - os.fstat(fd).st_size)
                break
            except _Restart:
                os.ftruncate(fd, 0)
                last_error = None
                continue
            except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
                if isinstance(exc, urllib.error.HTTPError) and exc.code < 500 and exc.code != 429:
                    _discard(part, fd)
                    raise CheckpointError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from exc
                last_error = exc
                log.warning("download of %s interrupted (attempt %d/%d): %s", url, attempt, attempts, exc)
                time.sleep(min(2 ** attempt, 30) * 0.1)
        else:
            raise CheckpointError(f"downloading {url} failed after {attempts} attempts: {last_error}")

        got = os.fstat(fd).st_size
        for label, want in (("server-reported size", total), ("expected size", size)):
            if want is not None and got != want:
                _discard(part, fd)
                raise CheckpointError(f"downloaded {got} bytes from {url} but the {label} is {want} bytes; "
                                      "the partial file was removed, run again to retry")
        record = _sha256_fd(fd)
        if expected and record.sha256 != expected:
            _discard(part, fd)
            raise CheckpointError(f"checksum mismatch for {url}: sha256 {record.sha256}, expected {expected}; "
                                  "the file was removed")
        os.replace(part, dest)  # renames the entry we opened; a symlink at `dest` is replaced, not followed
    finally:
        os.close(fd)
    write_sidecar(dest, record)
    log.info("downloaded %s (%d bytes, sha256 %s)", dest, record.size, record.sha256)
    return record


def _open_part(part: Path) -> int:
    """The resumable partial file, opened for appending."""
    return _open_own_file(part, os.O_RDWR | os.O_CREAT | os.O_APPEND)


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold the download lock of `folder` (created if missing): an exclusive flock on its
    `.download.lock`, waited for as long as another process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    # O_NONBLOCK: a FIFO planted under the lock's name must not hang the open (flock still waits).
    fd = _open_own_file(folder / LOCK_NAME, os.O_RDONLY | os.O_CREAT | os.O_NONBLOCK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _open_own_file(path: Path, flags: int) -> int:
    """`path` opened without following a symlink; it must be a regular file owned by us with a single
    link (not a planted hard link to a file elsewhere)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        if os.path.islink(path):
            raise CheckpointError(f"refusing to open {path}: it is a symbolic link (not created by this "
                                  "program); remove it and run again") from None
        raise CheckpointError(f"cannot open {path}: {exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid != os.geteuid():
        os.close(fd)
        raise CheckpointError(f"refusing to use {path}: it is not a plain file of this user with a single "
                              "link; remove it and run again")
    return fd


def _discard(part: Path, fd: int) -> None:
    os.ftruncate(fd, 0)
    if os.path.samestat(os.fstat(fd), os.lstat(part)):
        os.unlink(part)


def _sha256_fd(fd: int) -> DigestRecord:
    h = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, CHUNK * 8, offset):
        h.update(chunk)
        offset += len(chunk)
    return DigestRecord(h.hexdigest(), offset)


class _Restart(Exception):
    """The server ignored our Range request: start from zero."""


def _fetch_into(url: str, fd: int, label: str, *, progress: bool, timeout: float) -> int | None:
    have = os.fstat(fd).st_size
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
            total = int(length) if length is not None else None
        with _progress(total, have, label.removesuffix(".part"), progress) as bar:
            while chunk := response.read(CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                bar.update(len(chunk))
    return total
