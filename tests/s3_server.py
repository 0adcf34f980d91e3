"""A real S3 API server on loopback for the tests: moto's standalone server (its own
process, HTTP on 127.0.0.1), started and stopped by the tests."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass

import requests

from tests.conftest import free_port, stop_process

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key-do-not-print"


@dataclass
class S3Server:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def new_bucket(self) -> str:
        name = "vt-" + secrets.token_hex(6)
        self.client().create_bucket(Bucket=name)
        return name

    def settings(self, bucket: str, prefix: str = "rec") -> dict[str, str]:
        return {"bucket": bucket, "prefix": prefix, "endpoint_url": self.endpoint,
                "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}

    def stop(self) -> None:
        stop_process(self.proc)


def start_s3(port: int | None = None) -> S3Server:
    port = port or free_port()
    moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:  # its first answer loads its S3 backend: seconds on a cold, busy machine
            requests.get(f"http://127.0.0.1:{port}/", timeout=(1, 10))
            return S3Server(proc, port)
        except requests.RequestException:  # not listening yet, or a slow first answer
            time.sleep(0.1)
    stop_process(proc)
    raise RuntimeError("moto_server did not start")
