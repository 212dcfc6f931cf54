"""Where the weights come from: an explicit local file (never downloaded) or the official (or
another) URL, downloaded once into the cache folder and verified."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imagebind_vectorizer.errors import CheckpointError
from imagebind_vectorizer.notices import download_notice, how_to_provide_weights
from imagebind_vectorizer.runtime.download import (
    DigestRecord,
    cache_file_name,
    download,
    folder_lock,
    read_sidecar,
    sha256_file,
    write_sidecar,
)
from imagebind_vectorizer.settings import OFFICIAL_CHECKPOINT_URL, Settings, cache_home

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/imagebind-vectorizer, else ~/.cache/imagebind-vectorizer (the `cache_dir`
    setting, IMAGEBIND_CACHE, overrides it)."""
    return cache_home() / "imagebind-vectorizer"


@dataclass(frozen=True)
class CheckpointSource:
    """Where the weights come from: an explicit local path (never downloaded) or a URL cached
    under `cache_dir`."""

    path: Path | None = None
    url: str = OFFICIAL_CHECKPOINT_URL
    sha256: str | None = None
    size: int | None = None
    cache_dir: Path | None = None

    @classmethod
    def of(cls, settings: Settings) -> CheckpointSource:
        return cls(path=Path(settings.checkpoint) if settings.checkpoint else None, url=settings.checkpoint_url,
                   sha256=settings.checkpoint_sha256,
                   cache_dir=Path(settings.cache_dir).expanduser() if settings.cache_dir else None)

    def cached_path(self) -> Path:
        return (self.cache_dir or default_cache_dir()) / cache_file_name(self.url)


def resolve_checkpoint(source: CheckpointSource, *, progress: bool = True,
                       announce: Callable[[str], None] | None = None) -> Path:
    """A local file ready to load. Downloads only when no explicit path was given, and says so
    first (`announce`, default: a warning in the log), with the size; when the download fails
    (offline, say), the error says how else to provide the weights."""
    if source.path is not None:
        path = Path(source.path).expanduser()
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist (an explicit path is never downloaded; "
                                  "unset it to download the official weights)")
        return path
    path = source.cached_path()
    if path.is_file():
        record = read_sidecar(path)
        if source.sha256 and record is None:
            # Placed by hand or changed since it was recorded: verify once, then remember the digest.
            log.info("verifying the sha256 of %s", path)
            record = sha256_file(path)
            write_sidecar(path, record)
        if source.sha256 and record and record.sha256 != source.sha256.lower():
            raise CheckpointError(f"cached checkpoint {path} has sha256 {record.sha256}, expected "
                                  f"{source.sha256}; delete it to download again")
        return path
    (announce or log.warning)(download_notice(source.url, path, official=source.url == OFFICIAL_CHECKPOINT_URL))
    try:
        download(source.url, path, sha256=source.sha256, size=source.size, progress=progress)
    except CheckpointError as exc:
        raise CheckpointError(f"No ImageBind weights are available: {exc}.\n{how_to_provide_weights(path)}") from exc
    return path


def prepare_checkpoint(source: CheckpointSource, *, progress: bool = True,
                       announce: Callable[[str], None] | None = None) -> tuple[Path, DigestRecord]:
    """Make ready, ahead of the server, the file it will load (the `download` command, which the Helm
    init container, compose's model-download service and the Dockerfiles' BAKE_WEIGHTS step run):
    download it unless it is an explicit path, record its digest in the sidecar the server reads, and
    check that digest against the pinned one. Processes sharing the cache folder (pods on one volume)
    take turns, so one downloads and the others find the file."""
    say = announce or log.info
    with contextlib.nullcontext() if source.path is not None else folder_lock(source.cached_path().parent):
        path = resolve_checkpoint(source, progress=progress, announce=announce)
        record = read_sidecar(path)
        if record is None:
            say(f"computing the sha256 of {path} ...")
            record = sha256_file(path)
            write_sidecar(path, record)
    if source.sha256 and record.sha256 != source.sha256.lower():  # resolve_checkpoint checks only cached files
        raise CheckpointError(f"checkpoint {path} has sha256 {record.sha256}, expected {source.sha256.lower()}")
    return path, record
