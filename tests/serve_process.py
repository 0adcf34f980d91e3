"""Run the real `vteller serve` command as a subprocess (what a newcomer runs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port, stop_process


@dataclass
class ServeProcess:
    proc: subprocess.Popen[str]
    url: str
    stdout: list[str]
    ready_s: float
    passwords: dict[str, str]

    def stop(self) -> None:
        stop_process(self.proc)

    def wait_warm(self) -> None:
        """Read its output up to the face-analysis workers' start (they load their models
        after the ready line, a few CPU seconds each): tests with 2 s node leases start
        their clock after that, not while the workers starve the node's renewals."""
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"vteller serve exited with {self.proc.wait(10)} while "
                                   "its analysis workers started")
            self.stdout.append(line)
            if "analysis workers" in line:
                assert "workers ready" in line, line
                return


def start_serve(tmp: Path, *args: str, env: dict[str, str] | None = None,
                timeout: float = 60, until: str = "Ctrl-C stops", port: int | None = None
                ) -> ServeProcess:
    """Start it and read its output up to the line containing `until` (the ready line;
    a standby prints "standby:" and waits)."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    full_env = {**os.environ, "VTELLER_DATA_DIR": str(tmp / "var"),
                "VTELLER_CERTS_DIR": str(tmp / "certs"), "VTELLER_PORT": str(port),
                "VTELLER_KEK_DIR": str(tmp / "secrets"),
                "VTELLER_DRAIN_S": "0",  # SIGTERM ends calls at once (tests that drain say so)
                **(env or {})}
    t0 = time.monotonic()
    log = tmp / f"serve-{port}.log"
    proc = subprocess.Popen([sys.executable, "-m", "vteller", "serve", *args], env=full_env,
                            stdout=subprocess.PIPE, text=True,
                            stderr=open(log, "w"),  # noqa: SIM115
                            cwd=tmp)
    lines: list[str] = []
    ready_s = float("nan")
    assert proc.stdout is not None
    while time.monotonic() - t0 < timeout:
        line = proc.stdout.readline()
        if not line:
            proc.wait(10)
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"vteller serve exited with {proc.returncode}: "
                               f"{''.join(lines)}\n--- its stderr (end) ---\n{tail}")
        lines.append(line)
        if "teller console:" in line:
            ready_s = time.monotonic() - t0
        if until in line:
            break
    passwords = dict(re.findall(r"^\s+(\S+) \(\w+\) (?:password|key): (\S+)$", "".join(lines), re.MULTILINE))
    return ServeProcess(proc, f"https://localhost:{port}", lines, ready_s, passwords)
