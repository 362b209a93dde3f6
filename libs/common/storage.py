"""Where export files and archives are kept: a local directory, or an S3-compatible bucket.

Keys are relative paths (``exports/<workspace>/<id>.csv``). A file is
written in full to a temporary path first and only then stored, so a key
that exists holds a whole file: a crash leaves a stray temporary file,
never a truncated export.

The S3 backend signs with botocore's SigV4 and sends with httpx (no
boto3 client), path style ``{endpoint}/{bucket}/{key}``, as the log
streams do (``services/streamer/destinations/s3.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from libs.common.settings import Settings

CHUNK = 1 << 20


class HashingWriter:
    """A binary file that keeps the SHA-256 and size of what is written to it.

    Export and archive files are stored with their digest: computing it on
    the way out saves reading the file back.
    """

    def __init__(self, f: Any) -> None:
        self.f = f
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return int(self.f.write(data))

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class StorageError(RuntimeError):
    """The store refused or could not be reached; the message has no secret."""


class Storage(Protocol):
    async def put(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at ``path`` under ``key``, replacing any earlier one."""
        ...

    def read(self, key: str) -> AsyncIterator[bytes]:
        """The stored bytes, in chunks; raises FileNotFoundError if absent."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; absent is fine."""
        ...


def sigv4_headers(
    method: str,
    url: str,
    *,
    region: str,
    access_key_id: str,
    secret_access_key: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | object = b"",
) -> dict[str, str]:
    """The headers of a SigV4-signed S3 request (``body``: bytes or a seekable file)."""
    aws = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    credentials = Credentials(access_key_id, secret_access_key)
    S3SigV4Auth(credentials, "s3", region).add_auth(aws)
    return {k: str(v) for k, v in aws.headers.items()}


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk
    finally:
        f.close()


def _safe_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a storage key: {key!r}")
    return key


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    def _put(self, key: str, path: Path) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(path, target)  # atomic: a reader sees the old file or the whole new one

    async def put(self, key: str, path: Path, content_type: str) -> None:
        await asyncio.to_thread(self._put, key, path)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        async for chunk in _chunks(self.path(key)):
            yield chunk

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)


def plain_client(timeout: float) -> httpx.AsyncClient:
    """The operator's own bucket: no proxy from the environment."""
    return httpx.AsyncClient(timeout=timeout, trust_env=False)


@dataclass(frozen=True)
class S3Storage:
    endpoint_url: str
    bucket: str
    region: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    prefix: str = ""
    #: Opens each request's client (``timeout`` in seconds). A bucket a workspace
    #: chose (scheduled deliveries) MUST get ``libs.common.ssrf.guarded_client``.
    client: Callable[[float], httpx.AsyncClient] = plain_client

    def url(self, key: str) -> str:
        return (
            f"{self.endpoint_url}/{self.bucket}/{quote(self.prefix + _safe_key(key), safe='/-_.~')}"
        )

    def _headers(
        self, method: str, url: str, headers: Mapping[str, str] | None = None, body: object = b""
    ) -> dict[str, str]:
        return sigv4_headers(
            method,
            url,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            headers=headers,
            body=body,
        )

    def _signed_put(self, url: str, path: Path, content_type: str) -> dict[str, str]:
        # SigV4 signs the payload's SHA-256: botocore reads the file once for it.
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            return self._headers(
                "PUT", url, {"Content-Type": content_type, "Content-Length": str(size)}, f
            )

    async def put(self, key: str, path: Path, content_type: str) -> None:
        url = self.url(key)
        headers = await asyncio.to_thread(self._signed_put, url, path, content_type)
        async with self.client(300) as client:
            r = await client.put(url, content=_chunks(path), headers=headers)
        if r.status_code // 100 != 2:
            raise StorageError(f"S3 PUT answered {r.status_code}")
        await asyncio.to_thread(path.unlink, missing_ok=True)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        url = self.url(key)
        async with (
            self.client(300) as client,
            client.stream("GET", url, headers=self._headers("GET", url)) as r,
        ):
            if r.status_code == 404:
                raise FileNotFoundError(key)
            if r.status_code // 100 != 2:
                raise StorageError(f"S3 GET answered {r.status_code}")
            async for chunk in r.aiter_bytes(CHUNK):
                yield chunk

    async def delete(self, key: str) -> None:
        url = self.url(key)
        async with self.client(60) as client:
            r = await client.delete(url, headers=self._headers("DELETE", url))
        if r.status_code // 100 != 2 and r.status_code != 404:
            raise StorageError(f"S3 DELETE answered {r.status_code}")


def from_settings(settings: Settings) -> Storage:
    """S3 when ``CHAINLOG_STORAGE_S3_BUCKET`` is set, else ``CHAINLOG_STORAGE_DIR``."""
    if settings.storage_s3_bucket:
        if not (settings.storage_s3_access_key_id and settings.storage_s3_secret_access_key):
            raise ValueError(
                "CHAINLOG_STORAGE_S3_BUCKET needs CHAINLOG_STORAGE_S3_ACCESS_KEY_ID"
                " and CHAINLOG_STORAGE_S3_SECRET_ACCESS_KEY"
            )
        return S3Storage(
            endpoint_url=settings.storage_s3_endpoint_url.rstrip("/"),
            bucket=settings.storage_s3_bucket,
            region=settings.storage_s3_region,
            access_key_id=settings.storage_s3_access_key_id,
            secret_access_key=settings.storage_s3_secret_access_key,
            prefix=settings.storage_s3_prefix,
        )
    return LocalStorage(settings.storage_dir)
