"""A real HAProxy (Debian's) on loopback in front of vteller nodes: TLS passes through
(TCP mode, so WebSocket and HTTPS alike), health checks on each node's /readyz over
TLS, and backup servers that get traffic only when every primary is down."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port, stop_process

CONFIG = (Path(__file__).parent.parent / "deploy" / "haproxy.cfg.template").read_text()


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or ("/usr/sbin/haproxy"
                                       if Path("/usr/sbin/haproxy").exists() else None)


@dataclass
class LoadBalancer:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)


def start_haproxy(folder: Path, primaries: list[int], backups: list[int] = []) -> LoadBalancer:  # noqa: B006
    binary = haproxy_binary()
    assert binary is not None
    port = free_port()
    servers = "\n".join(
        [f"    server n{i} 127.0.0.1:{p}" for i, p in enumerate(primaries)]
        + [f"    server b{i} 127.0.0.1:{p} backup" for i, p in enumerate(backups)])
    cfg = folder / "haproxy.cfg"
    cfg.write_text(CONFIG.format(bind=f"127.0.0.1:{port}", servers=servers))
    check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=open(folder / "haproxy.log", "w"))  # noqa: SIM115
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return LoadBalancer(proc, port)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("haproxy did not start")
