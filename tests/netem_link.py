"""A link emulator in user space, for kernels without `tc netem` (this machine kind's:
CONFIG_NET_SCH_NETEM is not set). Two TUN devices, one on this host and one in a
network namespace, and this process copying IP packets between them: each packet is
dropped with probability `loss`, else delivered `delay` seconds later (order kept);
`down` drops everything (an outage). Both ends are the kernel's own IP stacks; only the
wire is emulated.

    python -m tests.netem_link NAMESPACE HOST_IP NS_IP

prints "ready", then reads commands on stdin, one per line:
    set LOSS DELAY_S      e.g. "set 0.03 0.05": 3% loss and 50 ms each way
    down | up
and prints "ok" after each; at the end (stdin closed) prints the counts as JSON.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import random
import struct
import subprocess
import sys

from tests.netns import enter

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


class Wire:
    def __init__(self) -> None:
        self.loss = 0.0
        self.delay = 0.0
        self.down = False
        self.counts = {"forwarded": 0, "dropped": 0}
        self.rng = random.Random(1)

    def pipe(self, loop: asyncio.AbstractEventLoop, src: int, dst: int) -> None:
        def readable() -> None:
            while True:
                try:
                    packet = os.read(src, 65535)
                except BlockingIOError:
                    return
                if self.down or self.rng.random() < self.loss:
                    self.counts["dropped"] += 1
                    continue
                self.counts["forwarded"] += 1
                if self.delay > 0:
                    loop.call_later(self.delay, self._write, dst, packet)
                else:
                    self._write(dst, packet)
        loop.add_reader(src, readable)

    @staticmethod
    def _write(fd: int, packet: bytes) -> None:
        try:
            os.write(fd, packet)
        except OSError:
            pass  # the device is gone (the namespace was deleted)


async def main(ns: str, host_ip: str, ns_ip: str) -> None:
    tag = ns[-6:]
    host_dev, ns_dev = f"th{tag}", f"tn{tag}"
    host_fd = open_tun(host_dev)
    sh("ip", "addr", "add", host_ip, "peer", ns_ip, "dev", host_dev)
    sh("ip", "link", "set", host_dev, "up")
    enter(ns)  # the second device is made inside the namespace
    ns_fd = open_tun(ns_dev)
    sh("ip", "addr", "add", ns_ip, "peer", host_ip, "dev", ns_dev)
    sh("ip", "link", "set", ns_dev, "up")
    wire = Wire()
    loop = asyncio.get_running_loop()
    wire.pipe(loop, host_fd, ns_fd)
    wire.pipe(loop, ns_fd, host_fd)
    print("ready", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        if line[0] == "set":
            wire.loss, wire.delay = float(line[1]), float(line[2])
        elif line[0] in ("down", "up"):
            wire.down = line[0] == "down"
        print("ok", flush=True)
    print(json.dumps(wire.counts), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
