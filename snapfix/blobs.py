"""The blob-store port (photos and thumbnails) and its filesystem adapter.

Views and events hold only a blob's key; the bytes live here. The distributed deployment
needs a shared store: ``snapfix.gridfs_blobs.GridFsBlobStore`` over PyMongo's async GridFS bucket;
both adapters pass ``tests/contract/test_blob_store.py``.
"""

from __future__ import annotations

import abc
import asyncio
import os
import re
import tempfile
from pathlib import Path

SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


class BlobStoreError(Exception):
    """A blob-store adapter failed; the driver's error is chained as the cause."""


class BlobStore(abc.ABC):
    """Immutable bytes under slash-separated keys."""

    @abc.abstractmethod
    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing nothing half-written (idempotent for the same bytes)."""

    @abc.abstractmethod
    async def get(self, key: str) -> tuple[bytes, str] | None:
        """The bytes and content type under ``key``, or None."""

    async def close(self) -> None:  # noqa: B027 - optional for adapters without resources
        """Release connections."""


def check_key(key: str) -> str:
    """Keys come from our own ids, but a path must never climb out of the store."""
    if not SAFE_KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"not a safe blob key: {key!r}")
    return key


class FilesystemBlobStore(BlobStore):
    """Blobs as files under a root folder; the content type sits in a sidecar file.

    Writes go to a temporary file renamed into place, so a reader never sees half a photo.
    """

    def __init__(self, root: str | Path) -> None:
        self._root = Path(root)

    def _path(self, key: str) -> Path:
        return self._root / check_key(key)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(self._write, path, data, content_type)
        except OSError as e:
            raise BlobStoreError(f"cannot store blob {key}") from e

    @staticmethod
    def _write(path: Path, data: bytes, content_type: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, content in ((path.with_name(path.name + ".type"), content_type.encode()), (path, data)):
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.replace(tmp, target)

    async def get(self, key: str) -> tuple[bytes, str] | None:
        path = self._path(key)

        def read() -> tuple[bytes, str] | None:
            try:
                data = path.read_bytes()
                content_type = path.with_name(path.name + ".type").read_text()
            except FileNotFoundError:
                return None
            return data, content_type

        try:
            return await asyncio.to_thread(read)
        except OSError as e:
            raise BlobStoreError(f"cannot read blob {key}") from e


def blob_store_path(url: str) -> Path:
    """``file:///abs/path`` or ``file://./relative`` to a folder."""
    if not url.startswith("file://"):
        raise ValueError(f"unsupported SNAPFIX_BLOB_STORE {url!r}; expected file:///path")
    return Path(url.removeprefix("file://"))
