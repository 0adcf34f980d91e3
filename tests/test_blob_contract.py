"""One contract for blob stores, run against the filesystem and a real S3 API server on
loopback: write in flushed pieces, read back (whole and by ranges), list, delete; bad
keys are refused; an encrypted recording written to either verifies the same way."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from tests.s3_server import start_s3
from vteller.audit import StreamWriter, decrypt
from vteller.store import FileBlobStore
from vteller.store.s3 import BlobUnavailable, S3BlobStore, S3Settings


@pytest.fixture(scope="module")
def s3():  # type: ignore[no-untyped-def]
    server = start_s3()
    yield server
    server.stop()


@pytest.fixture(params=["file", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "file":
        return FileBlobStore(tmp_path / "blobs")
    server = request.getfixturevalue("s3")
    return S3BlobStore(S3Settings(**server.settings(server.new_bucket())), max_buffer=1 << 20)


def test_write_flush_read_list_delete(blobs):
    data = os.urandom(300_000)
    with blobs.open_write("sess-1/customer.video.webm.vtenc") as fh:
        for i in range(0, len(data), 70_000):
            fh.write(data[i:i + 70_000])
            fh.flush()  # every flush is durable on its own
    with blobs.open_write("sess-1/teller.audio.webm.vtenc") as fh:
        fh.write(b"audio")
    assert blobs.exists("sess-1/customer.video.webm.vtenc")
    assert not blobs.exists("sess-1/nothing")
    assert blobs.list("sess-1") == ["sess-1/customer.video.webm.vtenc",
                                    "sess-1/teller.audio.webm.vtenc"]
    assert blobs.list("sess-2") == []
    with blobs.open_read("sess-1/customer.video.webm.vtenc") as fh:
        assert fh.read() == data
    with blobs.open_read("sess-1/customer.video.webm.vtenc") as fh:  # ranges
        fh.seek(123_456)
        assert fh.read(100_000) == data[123_456:223_456]
        fh.seek(-10, io.SEEK_END)
        assert fh.read() == data[-10:]
    with pytest.raises(FileExistsError):
        blobs.open_write("sess-1/teller.audio.webm.vtenc")
    blobs.delete("sess-1/customer.video.webm.vtenc")
    assert blobs.list("sess-1") == ["sess-1/teller.audio.webm.vtenc"]
    with pytest.raises((FileNotFoundError, OSError)):
        blobs.open_read("sess-1/customer.video.webm.vtenc")


def test_call_ids_may_start_with_a_dash(blobs):
    """token_urlsafe call ids: 1 in 64 starts with '-'."""
    with blobs.open_write("-p9yDe8IodM_bqcl/customer.audio.webm.vtenc") as fh:
        fh.write(b"x")
    assert blobs.list("-p9yDe8IodM_bqcl") == ["-p9yDe8IodM_bqcl/customer.audio.webm.vtenc"]


@pytest.mark.parametrize("key", ["../x/y", "/abs", "s/a%00b", "s/\x00", "s/../../etc"])
def test_bad_keys_are_refused(blobs, key):
    with pytest.raises(ValueError):
        blobs.exists(key)


def test_an_encrypted_stream_round_trips(blobs):
    key = os.urandom(32)
    plain = os.urandom(200_000)
    with blobs.open_write("s/track.webm.vtenc") as fh:
        writer = StreamWriter(fh, key, "k", segment_max=16_384)
        for i in range(0, len(plain), 50_000):
            writer.write(plain[i:i + 50_000])
            writer.flush()
        digest = writer.close()
    with blobs.open_read("s/track.webm.vtenc") as fh:
        assert b"".join(decrypt(fh, lambda _: key)) == plain
    import hashlib

    with blobs.open_read("s/track.webm.vtenc") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == digest


def test_s3_down_buffers_a_bounded_amount_then_fails(s3):
    from tests.s3_server import start_s3 as restart

    bucket = s3.new_bucket()
    blobs = S3BlobStore(S3Settings(**s3.settings(bucket)), max_buffer=200_000)
    fh = blobs.open_write("s/rec.webm.vtenc")
    fh.write(b"a" * 50_000)
    fh.flush()
    s3.stop()  # the endpoint goes away mid-recording
    try:
        fh.write(b"b" * 50_000)
        with pytest.raises(BlobUnavailable):
            fh.flush()  # kept for a later flush
        fh.write(b"c" * 100_000)
        with pytest.raises(BlobUnavailable, match="buffered"):
            fh.write(b"d" * 100_000)  # over the bound: the recording stops here
        assert fh.failed
    finally:
        again = restart(s3.port)
        s3.proc = again.proc
    # what was flushed before the outage is there (moto keeps nothing across restarts,
    # so only the API's answers are checked here)
    with pytest.raises(BlobUnavailable):
        fh.write(b"e")


def test_startup_names_the_setting_for_a_missing_bucket_or_bad_endpoint(s3, tmp_path):
    from tests.conftest import make_settings
    from vteller.app import open_blobs
    from vteller.config import SettingsError

    missing = make_settings(tmp_path, s3=s3.settings("no-such-bucket-here"))
    with pytest.raises(SettingsError, match="VTELLER_S3__BUCKET.*does not exist") as info:
        open_blobs(missing)
    assert "testing-secret-key" not in str(info.value)
    with pytest.raises(SettingsError, match="VTELLER_S3__ENDPOINT_URL"):
        make_settings(tmp_path, s3={**s3.settings("bucket"), "endpoint_url": "ftp://x"})
    unreachable = make_settings(tmp_path, s3={**s3.settings("bucket"),
                                              "endpoint_url": "http://127.0.0.1:9"})
    with pytest.raises(SettingsError, match="VTELLER_S3__BUCKET.*unreachable"):
        open_blobs(unreachable)
