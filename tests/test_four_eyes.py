"""Four eyes and the bank webhook, over the wire: a teller's approval of a four-eyes
business type waits for a different person with the auditor role, who must open the
session first; only then is the final decision posted to the bank's HTTPS webhook
(HMAC-signed, retried with backoff, one idempotency key), from a durable outbox."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import accept_call, end_call, free_port, make_settings, start_server
from tests.test_auditor import session_for
from vteller.bank import verify_signature
from vteller.tls import CA_CERT, ensure_dev_certificates, server_ssl_context

SECRET = "s" * 24 + "-webhook-secret-0123"
REASON = {"reason": "four-eyes check of the card order"}
TYPES = [{"id": "general", "title": "General enquiry"},
         {"id": "card_issuance_review", "title": "Card issuance review", "four_eyes": True}]


@dataclass
class Receiver:
    """The bank's webhook: refuses the first `fail_first` posts with 503."""

    fail_first: int
    posts: list[tuple[dict[str, str], bytes, float]] = field(default_factory=list)
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append((dict(request.headers), await request.read(), time.monotonic()))
        if len(self.posts) <= self.fail_first:
            return web.Response(status=503)
        return web.json_response({"ok": True})

    async def start(self, certs: Path, port: int) -> None:
        cert, key, _ = ensure_dev_certificates(certs, ["127.0.0.1"])
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port,
                          ssl_context=server_ssl_context(cert, key)).start()

    async def until(self, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.posts) < count:
            assert time.monotonic() < deadline, f"{len(self.posts)} posts, wanted {count}"
            await asyncio.sleep(0.05)


@pytest.fixture
async def bank(tmp_path: Path):
    receiver, port = Receiver(fail_first=2), free_port()
    await receiver.start(tmp_path / "bank-certs", port)
    settings = make_settings(
        tmp_path, review={"business_types": TYPES},
        bank={"webhook_url": f"https://127.0.0.1:{port}/hook", "webhook_secret": SECRET,
              "webhook_ca_file": tmp_path / "bank-certs" / CA_CERT, "retry_base_s": 0.3})
    runner, server = await start_server(settings)
    yield server, receiver
    await runner.cleanup()
    server.components.store.close()
    assert receiver.runner is not None
    await receiver.runner.cleanup()


async def _decided_call(server, tel, customer: str, business_type: str, decision: dict,
                        pending: bool) -> str:
    cust = await server.customer(customer)
    call_id = await accept_call(tel, cust, business_type=business_type)
    await tel.send({"type": "review.decide", **decision})
    recorded = await tel.recv("review.recorded")
    assert recorded["pending_audit"] is pending
    await end_call(tel, cust)
    await cust.close()
    await server.manager.flush()
    return call_id


def _outcome(server, call_id: str):  # type: ignore[no-untyped-def]
    return tuple(server.components.store.run(
        "SELECT outcome, outcome_reason FROM calls WHERE call_id=?", (call_id,))[0])


async def test_four_eyes_approval_then_signed_retried_webhook(bank):
    server, receiver = bank
    tel = await server.teller("teller1")
    # an ordinary type: the teller's decision is final and goes to the bank at once
    plain = await _decided_call(server, tel, "c-plain", "general",
                                {"decision": "reject", "reason_code": "not_eligible"}, False)
    await receiver.until(3)  # 503, 503, then accepted
    bodies = [json.loads(body) for _, body, _ in receiver.posts]
    assert [b["id"] for b in bodies] == [f"decision:{plain}"] * 3
    assert bodies[-1] == {"id": f"decision:{plain}", "type": "decision.final", "data": {
        "call_id": plain, "customer_id": "c-plain", "business_type": "general",
        "decision": "reject", "reason_code": "not_eligible", "teller": "teller1",
        "decided_at": bodies[-1]["data"]["decided_at"], "four_eyes": None}}
    for headers, body, _ in receiver.posts:
        assert headers["Idempotency-Key"] == f"decision:{plain}"
        assert verify_signature(headers["Vteller-Signature"], body, SECRET, time.time())
        assert not verify_signature(headers["Vteller-Signature"], body + b" ", SECRET,
                                    time.time())
    gaps = [b[2] - a[2] for a, b in zip(receiver.posts, receiver.posts[1:])]
    assert gaps[1] > gaps[0] * 1.3, gaps  # backoff doubles (with jitter)

    # a four-eyes type: the teller's approval waits; nothing is sent
    card = await _decided_call(server, tel, "c-card", "card_issuance_review",
                               {"decision": "approve"}, True)
    assert _outcome(server, card) == ("successful", "pending_audit")
    await asyncio.sleep(1.5)
    assert len(receiver.posts) == 3
    url = f"{server.url}/api/audit"
    aud = await session_for(server, "aud1", "auditor", {"permissions": []})
    aud2 = await session_for(server, "aud2", "auditor", {"permissions": []})
    try:
        pending = (await (await aud.get(f"{url}/approvals")).json())["approvals"]
        assert [(p["session_id"], p["teller"], p["business_type"]) for p in pending] == [
            (card, "teller1", "card_issuance_review")]
        r = await aud.post(f"{url}/sessions/{card}/approval", json={"approve": True, **REASON})
        assert r.status == 403 and (await r.json())["error"]["code"] == "open_first"
        r = await aud.post(f"{url}/sessions/{plain}/approval", json={"approve": True, **REASON})
        assert r.status == 404  # not a four-eyes approval
        r = await aud.post(f"{url}/sessions/{card}/approval", json={"approve": True})
        assert r.status == 400  # a reason is required
        assert (await aud.post(f"{url}/sessions/{card}/open", json=REASON)).status == 200
        r = await aud.post(f"{url}/sessions/{card}/approval", json={"approve": True, **REASON})
        assert r.status == 200 and (await r.json())["status"] == "approved"
        assert (await aud2.post(f"{url}/sessions/{card}/open", json=REASON)).status == 200
        r = await aud2.post(f"{url}/sessions/{card}/approval",
                            json={"approve": False, **REASON})
        assert r.status == 409  # decided once
    finally:
        await aud.close()
        await aud2.close()
    await receiver.until(4)
    headers, body, _ = receiver.posts[-1]
    final = json.loads(body)
    assert final["id"] == f"decision:{card}" and headers["Idempotency-Key"] == final["id"]
    assert final["data"]["decision"] == "approve"
    assert final["data"]["four_eyes"]["auditor"] == "aud1"
    assert final["data"]["four_eyes"]["status"] == "approved"
    assert _outcome(server, card) == ("successful", None)
    actions = [e["action"] for e in server.components.access.entries(50, card)]
    assert "four_eyes.approve" in actions and "open" in actions
    deadline = time.monotonic() + 5  # the worker marks an event after the bank's answer
    while server.components.store.outbox_counts() != {"delivered": 2} \
            and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert server.components.store.outbox_counts() == {"delivered": 2}
    metrics = server.components.metrics.exposition().decode()
    assert 'vteller_bank_events_total{node=' in metrics
    assert [line.rsplit(" ", 1)[1] for line in metrics.splitlines()
            if line.startswith("vteller_bank_events_total{") and 'result="retry"' in line
            ] == ["2.0"]
    await tel.close()


@pytest.mark.settings(review={"business_types": TYPES})
async def test_only_another_person_with_the_auditor_role_decides(server):
    """The teller who approved cannot confirm it (the API is for auditors; one account
    has one role); a rejection by the second person makes the call unsuccessful. No
    webhook configured: nothing is queued for the bank."""
    tel = await server.teller("teller1")
    card = await _decided_call(server, tel, "c-card", "card_issuance_review",
                               {"decision": "approve"}, True)
    own = await session_for(server, "teller1", "teller")
    aud = await session_for(server, "aud1", "auditor", {"permissions": []})
    url = f"{server.url}/api/audit/sessions/{card}"
    try:
        r = await own.post(f"{url}/approval", json={"approve": True, **REASON})
        assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
        assert (await aud.post(f"{url}/open", json=REASON)).status == 200
        r = await aud.post(f"{url}/approval",
                           json={"approve": False, "reason": "signature does not match"})
        assert r.status == 200 and (await r.json())["status"] == "rejected"
    finally:
        await own.close()
        await aud.close()
    assert _outcome(server, card) == ("unsuccessful", "four_eyes_rejected")
    assert server.components.store.outbox_counts() == {}
    actions = [e["action"] for e in server.components.access.entries(50, card)]
    assert actions[0] == "four_eyes.reject"  # newest first
    await tel.close()
