"""Thousands of random and malformed messages from several clients while a call runs."""

from __future__ import annotations

import asyncio
import json
import random
import string
from typing import Any

import pytest

from tests.helpers import SignalClient
from tests.test_call_media import start_call
from vteller.protocol import CLIENT_MESSAGES, ErrorCode

SAFE_FOR_CALL_PARTIES = sorted(set(CLIENT_MESSAGES) - {"call.hangup", "queue.leave"})


def _junk(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.randint(-2**63, 2**63)
    if kind == 1:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(40)))
    if kind == 2:
        return rng.choice([None, True, False, 1.5e308, -0.0])
    if kind == 3:
        return rng.choice(["", "\u0000", "\ud7ff" * 10, "é" * 50])
    if kind == 4:
        return [_junk(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {_junk_key(rng): _junk(rng, depth + 1) for _ in range(rng.randrange(5))}


def _junk_key(rng: random.Random) -> str:
    return rng.choice(["type", "id", "call_id", "sdp", "status", "token", "resume", "v", "x"])


def fuzz_message(rng: random.Random, types: list[str]) -> str:
    choice = rng.randrange(8)
    if choice == 0:
        return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(1, 200)))
    if choice == 1:
        return json.dumps(_junk(rng))
    if choice == 2:
        return "[" * 50_000 + "]" * 50_000  # nesting bomb
    if choice == 3:
        return json.dumps({"type": "ping", "pad": "x" * rng.randrange(64_000, 200_000)})
    if choice == 4:
        return json.dumps({"type": rng.choice(["", "Ping", "queue", "../etc", "x" * 300])})
    msg: dict[str, Any] = {"type": rng.choice(types)}
    for _ in range(rng.randrange(4)):
        msg[_junk_key(rng)] = _junk(rng)
    msg["type"] = msg["type"] if isinstance(msg.get("type"), str) else rng.choice(types)
    if msg["type"] in ("call.hangup", "queue.leave") and msg["type"] not in types:
        msg["type"] = "ping"
    if msg["type"] == "webrtc.offer":  # garbage SDP only
        msg["sdp"] = "v=0\r\n" + "".join(rng.choice(string.printable) for _ in range(80))
    return json.dumps(msg)


async def fuzz(sig: SignalClient, seed: int, count: int, types: list[str]) -> str | None:
    """Send `count` fuzzed messages; returns why the server closed the connection, if it did."""
    rng = random.Random(seed)
    for i in range(count):
        try:
            await sig.send(fuzz_message(rng, types))
        except ConnectionError:
            await sig.closed.wait()
            return f"closed {sig.ws.close_code} after {i} messages"
        if i % 50 == 0:
            await asyncio.sleep(0.01)
    return None


@pytest.mark.settings(messages_per_second=100_000, message_burst=100_000)
async def test_fuzzing_does_not_hurt_the_call(server):
    cust_sig, teller_sig, customer, teller, call_id, _ = await start_call(server)
    attackers = [await server.customer(f"c-evil-{i}") for i in range(2)]
    attackers.append(await SignalClient.open(server.ws_url))  # never authenticates
    attackers.append(await server.teller("teller-evil", available=False))
    all_types = sorted(CLIENT_MESSAGES)
    try:
        await asyncio.gather(customer.wait_frames("video", 5), teller.wait_frames("video", 5))
        before = (customer.received["video"], teller.received["video"])
        closed = await asyncio.gather(
            fuzz(cust_sig, 1, 600, SAFE_FOR_CALL_PARTIES),
            fuzz(teller_sig, 2, 600, [t for t in SAFE_FOR_CALL_PARTIES if t != "teller.status"]),
            *(fuzz(a, 10 + i, 700, all_types) for i, a in enumerate(attackers)),
        )
        # only the never-authenticated client may be closed (a fuzzed hello fails auth: 4401)
        assert closed[:4] + closed[5:] == [None] * 5, closed
        assert closed[4] in (None, *(f"closed 4401 after {i} messages" for i in range(700)))
        # the call is intact and media kept flowing both ways
        await asyncio.gather(customer.wait_frames("video", before[0] + 30),
                             teller.wait_frames("video", before[1] + 30))
        assert server.manager.calls[call_id].state == "active"
        for sig in (cust_sig, teller_sig, *attackers[:2], attackers[3]):
            assert not sig.closed.is_set()
            await sig.request({"type": "ping", "id": "still-there"}, "pong", timeout=20)
        codes = [m["code"] for s in (cust_sig, teller_sig, *attackers) for m in s.inbox
                 if m.get("type") == "error"]
        assert len(codes) > 1500
        assert set(codes) <= {c.value for c in ErrorCode}
        assert "internal" not in codes, "a malformed message reached a code path that crashed"
        assert {"bad_json", "unknown_type", "invalid_message", "too_large"} <= set(codes)
    finally:
        for sig in (cust_sig, teller_sig, *attackers):
            await sig.close()
        await customer.close()
        await teller.close()
