"""The BlobStore port on MongoDB GridFS, for the distributed deployment (``SNAPFIX_BLOB_STORE=mongodb://...``).

The command API stores uploads and the photo worker (in ``snapfix projectors``) reads them
and stores thumbnails, in different processes on different hosts: a folder would not be
shared, so the bytes go to the same MongoDB (or FerretDB) as the views, through PyMongo's
async GridFS bucket. GridFS writes every chunk before the file document, and a reader
finds a file only through that document, so nobody ever sees half a photo.
"""

from __future__ import annotations

from typing import Any

from gridfs import AsyncGridFSBucket, NoFile
from pymongo import AsyncMongoClient
from pymongo.errors import ConfigurationError, PyMongoError

from snapfix.blobs import BlobStore, BlobStoreError, check_key

BUCKET = "blobs"


class GridFsBlobStore(BlobStore):
    """Blobs as GridFS files named by their key; the content type sits in the file's metadata."""

    def __init__(self, url: str, *, bucket: str = BUCKET, timeout_ms: int = 2000) -> None:
        """Nothing connects yet; short timeouts make a store that is down fail fast rather than hang a request."""
        try:
            self._client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
                url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
            )
            self._bucket = AsyncGridFSBucket(self._client.get_default_database(), bucket_name=bucket)
        except ConfigurationError as e:
            raise ValueError(f"the blob store URL must name a database, e.g. mongodb://host:27017/snapfix: {e}") from e

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Upload a new revision, then drop older ones; the same bytes again write nothing (a retried command)."""
        check_key(key)
        try:
            if await self.get(key) == (data, content_type):
                return
            new_id = await self._bucket.upload_from_stream(key, data, metadata={"content_type": content_type})
            async for old in self._bucket.find({"filename": key, "_id": {"$ne": new_id}}):
                await self._bucket.delete(old._id)
        except PyMongoError as e:
            raise BlobStoreError(f"cannot store blob {key}") from e

    async def get(self, key: str) -> tuple[bytes, str] | None:
        """The newest complete revision under ``key``, or None."""
        check_key(key)
        try:
            stream = await self._bucket.open_download_stream_by_name(key)
            data = await stream.read()
        except NoFile:
            return None
        except PyMongoError as e:
            raise BlobStoreError(f"cannot read blob {key}") from e
        metadata = stream.metadata or {}
        return data, str(metadata.get("content_type", "application/octet-stream"))

    async def close(self) -> None:
        await self._client.close()
