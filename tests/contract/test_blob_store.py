"""The BlobStore contract: the filesystem folder and GridFS keep photos and thumbnails the same way.

The command API writes uploads and the photo worker reads them back in another process,
so both adapters must agree on what a missing key, a replaced blob and a bad key mean.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from snapfix.blobs import BlobStore, FilesystemBlobStore
from snapfix.gridfs_blobs import GridFsBlobStore
from tests.contract.backends import require_engine

MONGO = "mongodb://127.0.0.1:27017"


@pytest.fixture(params=["filesystem", pytest.param("mongodb", marks=pytest.mark.engines)])
async def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "mongodb":
        require_engine("mongodb")
        database = f"sfb_{uuid.uuid4().hex[:10]}"
        adapter: BlobStore = GridFsBlobStore(f"{MONGO}/{database}")
        yield adapter
        await adapter.close()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGO)
        await client.drop_database(database)
        await client.close()
        return
    adapter = FilesystemBlobStore(tmp_path / "blobs")
    yield adapter
    await adapter.close()


async def test_a_missing_key_is_none(blobs: BlobStore) -> None:
    """A thumbnail not made yet is a 404, not an error."""
    assert await blobs.get("photos/nobody/here.jpg") is None


async def test_bytes_and_content_type_come_back(blobs: BlobStore) -> None:
    """The query API serves the stored content type, never a guess."""
    await blobs.put("photos/i1/p1.jpg", b"\xff\xd8\xff\xe0jpeg", "image/jpeg")
    assert await blobs.get("photos/i1/p1.jpg") == (b"\xff\xd8\xff\xe0jpeg", "image/jpeg")


async def test_a_large_blob_spans_chunks_intact(blobs: BlobStore) -> None:
    """A 10 MB photo is several GridFS chunks (255 kB each): it must come back byte for byte."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    await blobs.put("photos/i1/big.png", data, "image/png")
    assert await blobs.get("photos/i1/big.png") == (data, "image/png")


async def test_putting_again_is_idempotent_and_replacing_keeps_the_newest(blobs: BlobStore) -> None:
    """A retried command stores the same bytes again; a replaced blob reads as the new one only."""
    await blobs.put("thumbnails/i1/p1.webp", b"one", "image/webp")
    await blobs.put("thumbnails/i1/p1.webp", b"one", "image/webp")
    await blobs.put("thumbnails/i1/p1.webp", b"two", "image/jpeg")
    assert await blobs.get("thumbnails/i1/p1.webp") == (b"two", "image/jpeg")


async def test_keys_are_independent(blobs: BlobStore) -> None:
    """A photo and its thumbnail share a prefix, not their bytes."""
    await asyncio.gather(
        blobs.put("photos/i2/p.jpg", b"photo", "image/jpeg"),
        blobs.put("thumbnails/i2/p.jpg", b"thumb", "image/jpeg"),
    )
    assert await blobs.get("photos/i2/p.jpg") == (b"photo", "image/jpeg")
    assert await blobs.get("thumbnails/i2/p.jpg") == (b"thumb", "image/jpeg")


@pytest.mark.parametrize("key", ["../etc/passwd", "photos/../../x", "/abs", "photos//x", ""])
async def test_unsafe_keys_are_refused(blobs: BlobStore, key: str) -> None:
    """Keys come from our ids, but one that could climb out of the store is a bug, refused loudly."""
    with pytest.raises(ValueError, match="not a safe blob key"):
        await blobs.put(key, b"x", "image/jpeg")
    with pytest.raises(ValueError, match="not a safe blob key"):
        await blobs.get(key)
