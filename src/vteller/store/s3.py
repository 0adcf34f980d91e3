"""S3-compatible object storage for blobs (recordings, evidence snapshots).

While a blob is written it is stored as numbered segment objects,
`PREFIX/session/name/seg-00000001`, one per flush: the recorder flushes every 1.5 s, so
a crash loses at most that much (S3 has no append, and a multipart part must be
>= 5 MiB, so a part per flush is not possible). The writer also spools what it wrote
to a local temporary file; on close it uploads that as one object (`.../data`, a
multipart upload) and deletes the segments, so a finished recording is one object. A
crash leaves the segments, which readers concatenate (and sealing binds). `open_read`
is seekable and fetches byte ranges, so a reader that wants part of a blob downloads
only that part.

When the endpoint is down, a writer keeps at most `max_buffer` bytes and then fails
(the recording ends there; the session is sealed incomplete); memory never grows
without bound.
"""

from __future__ import annotations

import io
import logging
import re
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO

from vteller.store.blobs import PART, check_key
from vteller.store.db import StoreError

SEGMENT = re.compile(r"^seg-(\d{8})$")
WHOLE = "data"
READ_AHEAD = 8 << 20
log = logging.getLogger(__name__)


class BlobUnavailable(StoreError):
    """The object store could not be reached or refused."""


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None


class S3BlobStore:
    def __init__(self, settings: S3Settings, max_buffer: int = 16 << 20) -> None:
        import boto3
        from botocore.config import Config

        self._bucket = settings.bucket
        self._prefix = settings.prefix.strip("/") + "/" if settings.prefix.strip("/") else ""
        self.max_buffer = max_buffer
        self._client = boto3.client(
            "s3", endpoint_url=settings.endpoint_url, region_name=settings.region,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            config=Config(retries={"max_attempts": 3, "mode": "standard"},
                          connect_timeout=5, read_timeout=30,
                          s3={"addressing_style": "path"}))

    def check(self) -> None:
        """At start-up: the bucket exists and these credentials may use it."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self._bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            what = {"404": "does not exist", "NoSuchBucket": "does not exist",
                    "403": "is not accessible with these credentials"}.get(code, code)
            raise BlobUnavailable(f"bucket {self._bucket!r} {what}") from None
        except BotoCoreError as exc:
            raise BlobUnavailable(f"object store unreachable ({type(exc).__name__})") from None

    # keys ------------------------------------------------------------------------------
    def _base(self, key: str) -> str:
        session, name = check_key(key)
        return f"{self._prefix}{session}/{name}/"

    def _segments(self, key: str) -> list[tuple[str, int]]:
        """(object key, size) of what makes up the blob, in order: the finished object,
        else the segments written so far."""
        base = self._base(key)
        out: list[tuple[str, int]] = []
        for page in self._pages(base):
            for obj in page:
                rest = obj["Key"][len(base):]
                if rest == WHOLE:
                    return [(obj["Key"], obj["Size"])]
                if SEGMENT.match(rest):
                    out.append((obj["Key"], obj["Size"]))
        return sorted(out)

    def _pages(self, prefix: str, delimiter: str | None = None) -> Any:
        kw: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
        if delimiter:
            kw["Delimiter"] = delimiter
        for page in self._call(lambda: list(
                self._client.get_paginator("list_objects_v2").paginate(**kw))):
            yield page.get("Contents", []) if delimiter is None else page

    def _call(self, fn: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except (BotoCoreError, ClientError) as exc:
            raise BlobUnavailable(f"object store: {type(exc).__name__}") from None

    # the BlobStore interface ----------------------------------------------------------------
    def open_write(self, key: str) -> BinaryIO:
        base = self._base(key)
        if self._segments(key):
            raise FileExistsError(key)
        return _SegmentWriter(self, base)  # type: ignore[return-value]

    def open_read(self, key: str) -> BinaryIO:
        segments = self._segments(key)
        if not segments:
            raise FileNotFoundError(key)
        return io.BufferedReader(_RangeReader(self, segments), READ_AHEAD)  # type: ignore[arg-type]

    def exists(self, key: str) -> bool:
        return bool(self._segments(key))

    def list(self, prefix: str) -> list[str]:
        if not PART.match(prefix):
            raise ValueError(f"bad blob prefix {prefix!r}")
        base = f"{self._prefix}{prefix}/"
        names = set()
        for page in self._pages(base):
            for obj in page:
                name, _, seg = obj["Key"][len(base):].partition("/")
                if seg == WHOLE or SEGMENT.match(seg):
                    names.add(f"{prefix}/{name}")
        return sorted(names)

    def delete(self, key: str) -> None:
        base = self._base(key)
        keys = [obj["Key"] for page in self._pages(base) for obj in page]
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i:i + 1000]]
            self._call(lambda b=batch: self._client.delete_objects(
                Bucket=self._bucket, Delete={"Objects": b, "Quiet": True}))

    # used by the writer and reader ------------------------------------------------------------
    def _put(self, key: str, data: bytes) -> None:
        self._call(lambda: self._client.put_object(Bucket=self._bucket, Key=key, Body=data))

    def _put_file(self, key: str, fh: BinaryIO) -> None:
        self._call(lambda: self._client.upload_fileobj(fh, self._bucket, key))

    def _delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i:i + 1000]]
            self._call(lambda b=batch: self._client.delete_objects(
                Bucket=self._bucket, Delete={"Objects": b, "Quiet": True}))

    def _get_range(self, key: str, start: int, end: int) -> bytes:
        return self._call(lambda: self._client.get_object(
            Bucket=self._bucket, Key=key, Range=f"bytes={start}-{end}")["Body"].read())


class _SegmentWriter(io.RawIOBase):
    """Buffers writes; each flush (and close) stores what is buffered as the next
    segment. A failed upload keeps the data for the next flush, up to max_buffer."""

    def __init__(self, store: S3BlobStore, base: str) -> None:
        super().__init__()
        self._store = store
        self._base = base
        self._buffer = bytearray()
        self._next = 1
        self._lock = threading.Lock()
        self._spool = tempfile.TemporaryFile(prefix="vteller-blob-")  # for the final object
        self.failed: str | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.failed:
            raise BlobUnavailable(self.failed)
        view = memoryview(data)
        if len(self._buffer) + len(view) > self._store.max_buffer:
            self.failed = (f"object store unavailable and {self._store.max_buffer} bytes "
                           "buffered: recording stopped")
            self._buffer = bytearray()  # what is stored stays; the rest is given up
            self._spool.close()
            raise BlobUnavailable(self.failed)
        self._buffer += view
        self._spool.write(view)
        return len(view)

    def flush(self) -> None:
        with self._lock:
            if not self._buffer or self.failed:
                return
            data = bytes(self._buffer)
            self._store._put(f"{self._base}seg-{self._next:08d}", data)  # may raise: kept
            self._next += 1
            del self._buffer[:len(data)]

    def close(self) -> None:
        """The last segment, then the whole blob as one object and the segments gone
        (a failure after the last segment leaves the segments: still complete)."""
        if self.closed:
            return
        try:
            self.flush()  # failing here: the blob is not complete, the caller must know
            if not self.failed and self._next > 2:
                try:
                    self._spool.seek(0)
                    self._store._put_file(self._base + WHOLE, self._spool)
                    self._store._delete_keys([f"{self._base}seg-{n:08d}"
                                              for n in range(1, self._next)])
                except BlobUnavailable:  # the segments are complete: readers use them
                    log.warning("blob compaction failed; its segments remain")
        finally:
            self._spool.close()
            super().close()


class _RangeReader(io.RawIOBase):
    """The concatenated segments as one seekable stream, read by byte ranges."""

    def __init__(self, store: S3BlobStore, segments: list[tuple[str, int]]) -> None:
        super().__init__()
        self._store = store
        self._segments = segments
        self._starts = []
        offset = 0
        for _, size in segments:
            self._starts.append(offset)
            offset += size
        self._size = offset
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        got = 0
        for (key, size), start in zip(self._segments, self._starts, strict=True):
            if self._pos + got >= start + size or got >= want:
                continue
            lo = self._pos + got - start
            hi = min(size, lo + want - got) - 1
            data = self._store._get_range(key, lo, hi)
            buffer[got:got + len(data)] = data
            got += len(data)
            if got >= want:
                break
        self._pos += got
        return got
