"""`vteller serve --workers N`: several node processes on one machine, one per core by
default. A call's media is forwarded by the process that hosts it (one core each), so
this is how one machine carries more calls than one process can.

Each worker is an ordinary node of a shared queue (`VTELLER_SHARE_QUEUE`): they bind
the same port with SO_REUSEPORT (the kernel spreads new connections over them) and each
also listens on its own port (port + i), its `VTELLER_NODE_URL`, where a customer moved
to its teller's worker, or a reconnect the kernel sent elsewhere, connects. Workers
start one after the other (the first makes certificates, migrates, seeds dev accounts);
a worker that dies is started again (a new node: its calls end as on any dead node, its
waiting customers resume on the others). SIGTERM or Ctrl-C drains every worker.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from vteller.config import Settings

READY = "Ctrl-C stops"  # a worker's last start-up line
RESTART_PAUSE_S = 1.0


@dataclass
class Worker:
    index: int
    port: int
    env: dict[str, str]
    argv: list[str]
    proc: subprocess.Popen[str] | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.ready.clear()
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        threading.Thread(target=self._echo, args=(self.proc,), daemon=True,
                         name=f"worker-{self.index}-out").start()

    def _echo(self, proc: subprocess.Popen[str]) -> None:
        """Pass the worker's output on (its ready line is this supervisor's to print)."""
        assert proc.stdout is not None
        for line in proc.stdout:
            if READY in line:
                self.ready.set()
                continue
            if self.index == 1:  # the page list and dev accounts, once
                sys.stdout.write(line)
            elif not line.startswith("  "):
                sys.stdout.write(f"[worker {self.index}] {line}")
            sys.stdout.flush()


def node_host(settings: Settings) -> str:
    if settings.public_names:
        return settings.public_names[0]
    return "localhost" if settings.host in ("127.0.0.1", "0.0.0.0", "::") else settings.host


def serve_workers(args: argparse.Namespace, settings: Settings) -> int:
    count = args.workers or os.cpu_count() or 1
    if not (settings.redis_url and settings.database_url):
        print("--workers needs VTELLER_REDIS_URL (the queue the workers share) and "
              "VTELLER_DATABASE_URL (PostgreSQL: the sessions, leases and resume secrets "
              "they share)", file=sys.stderr)
        return 2
    if settings.standby:
        print("--workers and VTELLER_STANDBY exclude each other", file=sys.stderr)
        return 2
    base = [sys.executable, "-m", "vteller"]
    if args.config:
        base += ["--config", str(args.config)]
    base += ["serve", "--port", str(settings.port), "--host", settings.host]
    if args.dev:
        base.append("--dev")
    host = node_host(settings)
    workers = []
    for i in range(1, count + 1):
        own = settings.port + i
        env = {**os.environ, "VTELLER_SHARE_QUEUE": "true", "VTELLER_REUSE_PORT": "true",
               "VTELLER_NODE_PORT": str(own), "VTELLER_NODE_URL": f"wss://{host}:{own}/ws"}
        workers.append(Worker(i, own, env, base))
    stopping = threading.Event()

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        for w in workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for w in workers:  # one after the other: the first prepares the data
        w.start()
        while not w.ready.wait(0.2):
            if stopping.is_set() or (w.proc is not None and w.proc.poll() is not None):
                if not stopping.is_set():
                    print(f"vteller: worker {w.index} (port {w.port}) exited with "
                          f"{w.proc.returncode if w.proc else None} before it was ready; "
                          "stopping the others", file=sys.stderr, flush=True)
                forward(signal.SIGTERM, None)
                _wait_all(workers)
                return 1
    print(f"vteller: {count} workers share https://{host}:{settings.port} (their own "
          f"ports {settings.port + 1}-{settings.port + count}); {READY} all", flush=True)
    while not stopping.is_set():
        time.sleep(0.2)
        for w in workers:
            code = w.proc.poll() if w.proc is not None else None
            if code is not None and not stopping.is_set():
                print(f"[worker {w.index}] exited with {code}; starting it again",
                      flush=True)
                time.sleep(RESTART_PAUSE_S)
                w.start()
    return _wait_all(workers)


def _wait_all(workers: list[Worker]) -> int:
    codes = [w.proc.wait() for w in workers if w.proc is not None]
    return 0 if all(c == 0 for c in codes) else 1
