"""Unpack a dataset archive once into a cache folder, safely against interruption."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from cnnzoo.errors import DatasetError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)


def cache_root() -> Path:
    return Path(os.environ.get("CNNZOO_CACHE", Path.home() / ".cache" / "cnnzoo"))


def unpacked(archive: Path) -> Path:
    """The folder an archive unpacks to, unpacking it on first use.

    The cache key is the archive's path, size and modification time, so a changed archive
    is unpacked afresh; unpacking goes to a temporary folder renamed into place, so an
    interrupted unpacking never leaves a half-filled cache behind.
    """
    stat = archive.stat()
    key = hashlib.sha1(
        f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    ).hexdigest()
    name = archive.name.removesuffix(".gz").removesuffix(".tgz").removesuffix(".tar")
    target = cache_root() / "unpacked" / f"{name}-{key[:12]}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        staging.rename(target)
    except (tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if target.is_dir():  # another process unpacked it first
            return target
        raise DatasetError(
            f"cannot unpack {archive}: {exc}. The archive may be truncated or corrupt."
        ) from exc
    return target
