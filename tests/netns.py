"""Network namespaces the tests make for themselves (iproute2): a customer host on a
link of its own with loss, delay or an outage (`EmulatedLink`: this kernel has no
`tc netem`, so `tests/netem_link.py` emulates the wire in user space between two TUN
devices), or one that reaches only a TURN server (veth `link`s). Only addresses made
here (10.199.0.0/16), never outside ones."""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNET = 0x40000000


def why_not() -> str | None:
    """Why namespaces cannot be made here (a skip reason), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    for tool in ("ip",):
        if not shutil.which(tool):
            return f"no {tool} (apt-get install iproute2)"
    return None


def run(*cmd: str, ns: str | None = None) -> None:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    done = subprocess.run(full, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(full)}: {done.stderr.strip()}")


@dataclass
class Link:
    """A veth pair: `outer` in the namespace `outer_ns` (None: this host's), `inner` in
    `ns`, with an address on each end."""

    ns: str
    inner: str
    inner_ip: str
    outer: str
    outer_ip: str
    outer_ns: str | None = None



def namespace() -> str:
    name = f"vt{secrets.token_hex(3)}"
    run("ip", "netns", "add", name)
    run("ip", "link", "set", "lo", "up", ns=name)
    return name


def delete(name: str) -> None:
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=20)


def link(ns: str, subnet: int, outer_ns: str | None = None) -> Link:
    """A /30 in 10.199.<subnet>.0 between `outer_ns` (or this host) and `ns`."""
    tag = secrets.token_hex(2)
    outer, inner = f"vo{tag}{subnet}", f"vi{tag}{subnet}"
    outer_ip, inner_ip = f"10.199.{subnet}.1", f"10.199.{subnet}.2"
    run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner, ns=outer_ns)
    run("ip", "link", "set", inner, "netns", ns, ns=outer_ns)
    run("ip", "addr", "add", f"{outer_ip}/30", "dev", outer, ns=outer_ns)
    run("ip", "link", "set", outer, "up", ns=outer_ns)
    run("ip", "addr", "add", f"{inner_ip}/30", "dev", inner, ns=ns)
    run("ip", "link", "set", inner, "up", ns=ns)
    return Link(ns, inner, inner_ip, outer, outer_ip, outer_ns)


class EmulatedLink:
    """A point-to-point link between this host (`host_ip`) and namespace `ns` (`ns_ip`)
    whose loss, delay and outages the test sets (`tests/netem_link.py`)."""

    def __init__(self, ns: str, subnet: int) -> None:
        self.host_ip, self.ns_ip = f"10.199.{subnet}.1", f"10.199.{subnet}.2"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.netem_link", ns, self.host_ip, self.ns_ip],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=Path(__file__).parent.parent)
        assert self._command(None) == "ready"

    def _command(self, text: str | None) -> str:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        if text is not None:
            self._proc.stdin.write(text + "\n")
            self._proc.stdin.flush()
        return self._proc.stdout.readline().strip()

    def set(self, loss: float, delay_s: float) -> None:
        """Each direction: drop with probability `loss`, deliver after `delay_s`."""
        assert self._command(f"set {loss} {delay_s}") == "ok"

    def down(self) -> None:
        assert self._command("down") == "ok"

    def up(self) -> None:
        assert self._command("up") == "ok"

    def close(self) -> dict[str, int]:
        """Stop it: (packets forwarded, dropped)."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.close()
        counts = json.loads(self._proc.stdout.readline() or "{}")
        self._proc.wait(10)
        return counts


@contextmanager
def namespaces(count: int) -> Iterator[list[str]]:
    made = [namespace() for _ in range(count)]
    try:
        yield made
    finally:
        for name in made:
            delete(name)  # its veth ends go with it


def enter(name: str) -> None:
    """Move the calling thread into namespace `name`: sockets it opens from now on live
    there; sockets it already has (the signaling connection) stay where they are."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
    finally:
        os.close(fd)
