"""The second factor inside a call, over the wire: the bank's webhook (a local HTTPS
receiver) gets the signed `otp.send` with the code, the customer types it, the
server checks it; evidence `tan_verified`. Wrong codes, expiry and an unreachable bank
each end in their typed state."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import accept_call, free_port, make_settings, start_server
from tests.test_four_eyes import SECRET, Receiver
from vteller.bank import verify_signature
from vteller.tls import CA_CERT


async def _bank_server(tmp_path: Path, fail_first: int, **bank):  # type: ignore[no-untyped-def]
    receiver, port = Receiver(fail_first=fail_first), free_port()
    await receiver.start(tmp_path / "bank-certs", port)
    settings = make_settings(tmp_path, bank={
        "webhook_url": f"https://127.0.0.1:{port}/hook", "webhook_secret": SECRET,
        "webhook_ca_file": tmp_path / "bank-certs" / CA_CERT, **bank})
    runner, server = await start_server(settings)
    return receiver, runner, server


@pytest.fixture
async def bank(tmp_path: Path):
    receiver, runner, server = await _bank_server(tmp_path, fail_first=1, otp_ttl_s=30)
    yield server, receiver
    await runner.cleanup()
    server.components.store.close()
    await receiver.runner.cleanup()


def _code(receiver: Receiver, index: int = -1) -> str:
    headers, body, _ = receiver.posts[index]
    assert verify_signature(headers["Vteller-Signature"], body, SECRET, time.time())
    event = json.loads(body)
    assert event["type"] == "otp.send"
    return event["data"]["code"]


async def test_code_sent_by_the_bank_typed_by_the_customer(bank):
    server, receiver = bank
    tel = await server.teller("teller1")
    cust = await server.customer("c-otp")
    call_id = await accept_call(tel, cust)
    await cust.send({"type": "otp.request"})
    await cust.error("forbidden")  # only the teller asks
    await cust.send({"type": "otp.submit", "code": "123456"})
    await cust.error("wrong_state")  # no code out yet
    await tel.send({"type": "otp.request"})
    sent = await cust.recv("otp.state", state="sent", timeout=10)
    assert sent["digits"] == 6 and 0 < sent["expires_in_s"] <= 30
    await tel.recv("otp.state", state="sent")
    assert len(receiver.posts) == 2  # the first was refused (503), retried
    code = _code(receiver)
    assert json.loads(receiver.posts[-1][1])["data"]["customer_id"] == "c-otp"
    assert receiver.posts[0][0]["Idempotency-Key"] == receiver.posts[1][0]["Idempotency-Key"]
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    await cust.send({"type": "otp.submit", "code": wrong})
    assert (await cust.recv("otp.state", state="wrong"))["attempts_left"] == 2
    await cust.send({"type": "otp.submit", "code": "12ab56"})
    await cust.error("invalid_message")
    await cust.send({"type": "otp.submit", "code": code})
    await cust.recv("otp.state", state="verified")
    await tel.recv("otp.state", state="verified")
    context = await tel.recv("call.context")
    while "tan_verified" not in context["evidence"]:
        context = await tel.recv("call.context")
    await tel.send({"type": "otp.request"})
    await tel.error("wrong_state")  # verified already
    await server.manager.flush()
    events = server.components.trail.events(call_id)
    kinds = [e["kind"] for e in events]
    assert kinds.count("otp.entered") == 2 and "otp.sent" in kinds
    assert [e["evidence"] for e in events if e["kind"] == "evidence"] == ["tan_verified"]
    assert code not in json.dumps(events)  # the code is never in the trail
    for c in (tel, cust):
        await c.close()


async def test_wrong_codes_use_up_the_attempts_and_codes_are_limited(bank):
    server, receiver = bank
    tel = await server.teller("teller1")
    cust = await server.customer("c-otp")
    await accept_call(tel, cust)
    for n in range(3):
        await tel.send({"type": "otp.request"})
        await cust.recv("otp.state", state="sent", timeout=10)
        code = _code(receiver)
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        for left in (2, 1):
            await cust.send({"type": "otp.submit", "code": wrong})
            assert (await cust.recv("otp.state", state="wrong"))["attempts_left"] == left
        await cust.send({"type": "otp.submit", "code": code if n == 0 else wrong})
        if n == 0:  # the right code after two wrong ones still counts
            await cust.recv("otp.state", state="verified")
            await tel.send({"type": "otp.request"})
            await tel.error("wrong_state")
            break
    await tel.close()
    await cust.close()

    tel = await server.teller("teller2")
    cust = await server.customer("c-otp2")
    await accept_call(tel, cust)
    for _ in range(3):
        await tel.send({"type": "otp.request"})
        await cust.recv("otp.state", state="sent", timeout=10)
        code = _code(receiver)
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        for state in ("wrong", "wrong", "failed"):
            await cust.send({"type": "otp.submit", "code": wrong})
            await cust.recv("otp.state", state=state)
        await cust.send({"type": "otp.submit", "code": code})
        await cust.error("wrong_state")  # that code is spent
    await tel.send({"type": "otp.request"})
    assert "at most 3" in (await tel.error("rate_limited"))["message"]
    await tel.close()
    await cust.close()


async def test_an_unreachable_bank_and_an_expired_code(tmp_path: Path):
    receiver, runner, server = await _bank_server(tmp_path, fail_first=3, otp_ttl_s=30)
    try:
        tel = await server.teller("teller1")
        cust = await server.customer("c-otp")
        await accept_call(tel, cust)
        await tel.send({"type": "otp.request"})
        await tel.recv("otp.state", state="delivery_failed", timeout=15)
        assert len(receiver.posts) == 3  # three attempts, then the teller is told
        assert not [m for m in cust.inbox if m["type"] == "otp.state"]
        await tel.send({"type": "otp.request"})  # the bank answers again
        await cust.recv("otp.state", state="sent", timeout=10)
        server.manager._call_of(server.manager.parties["customer:c-otp"]).otp.expires_at = 0
        await cust.send({"type": "otp.submit", "code": _code(receiver)})
        await cust.recv("otp.state", state="expired")
        await tel.recv("otp.state", state="expired")
        await tel.close()
        await cust.close()
    finally:
        await runner.cleanup()
        server.components.store.close()
        await receiver.runner.cleanup()


@pytest.mark.settings()
async def test_no_bank_configured_no_codes(server):
    tel = await server.teller("teller1")
    cust = await server.customer("c-otp")
    await accept_call(tel, cust)
    await tel.send({"type": "otp.request"})
    assert "no bank backend" in (await tel.error("not_allowed"))["message"]
    await tel.close()
    await cust.close()
