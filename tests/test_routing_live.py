"""The router in the running server: EWT and green channel, unservable requests,
skills, wrap-up timer, supervisor dashboard and control, metrics."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.conftest import accept_call
from tests.helpers import SignalClient, insecure_ssl


async def test_green_channel_ewt_and_position(server):
    await server.teller("teller1", available=False)  # staffed (not on break) but not free
    from vteller.routing import TellerState

    router = server.manager.router
    for state in (TellerState.AVAILABLE, TellerState.OFFERED, TellerState.BUSY):
        router.set_state("teller1", state)  # pretend busy: requests wait
    young = await server.customer("c-young", birth_year=1990)
    old = await server.customer("c-old", name="Grandma", birth_year=1950)
    w = await young.request({"type": "queue.join"}, "queue.status", state="queued")
    assert w["green_channel"] is False and w["servable"] and w["ewt_s"] == 180  # 1 x AHT / 1
    g = await old.request({"type": "queue.join"}, "queue.status", state="queued")
    assert g["green_channel"] is True and g["position"] == 1
    pushed = await young.recv("queue.status", position=2, timeout=3)  # pushed by the ticker
    assert pushed["ewt_s"] == 360
    for s in (young, old):
        await s.close()


async def test_unservable_request_is_told_and_may_wait_or_leave(server):
    await server.teller("teller1")  # skills: general, card_issuance_review (en)
    c = await server.customer("c-1")
    status = await c.request({"type": "queue.join", "business_type": "mortgage"},
                             "queue.status", state="queued")
    assert status["servable"] is False and status["ewt_s"] is None
    server.add_staff("mortgage1", profile={"skills": {"mortgage": 0.9}, "languages": ["en"]})
    m1 = await server.teller("mortgage1")
    offer = await m1.recv("offer.incoming")  # the right teller logged in: offered
    assert offer["business_type"] == "mortgage"
    await c.send({"type": "queue.leave"})
    await c.recv("call.ended", reason="left")
    await c.close()
    await m1.close()


async def test_language_mismatch_not_offered(server):
    teller = await server.teller("teller1")
    c = await server.customer("c-zh")
    await c.request({"type": "queue.join", "language": "zh"}, "queue.status", state="queued")
    await asyncio.sleep(1.5)
    assert not [m for m in teller.inbox if m["type"] == "offer.incoming"]
    await c.close()
    await teller.close()


async def test_chinese_speaking_customer_reaches_a_chinese_speaking_teller(server):
    server.add_staff("zh1", profile={"skills": {"general": 0.8}, "languages": ["zh"]})
    english = await server.teller("teller1")
    chinese = await server.teller("zh1")
    c = await server.customer("c-zh")
    await c.send({"type": "queue.join", "language": "zh"})
    offer = await chinese.recv("offer.incoming")
    assert offer["language"] == "zh"  # the teller sees whom to greet in Chinese
    assert not [m for m in english.inbox if m["type"] == "offer.incoming"]
    for s in (c, english, chinese):
        await s.close()


@pytest.mark.settings(routing={"wrap_up_s": 0.5})
async def test_wrap_up_timer_and_extension(server):
    teller = await server.teller("teller1")
    c = await server.customer("c-1")
    call_id = await accept_call(teller, c)
    await c.send({"type": "call.hangup"})
    wrap = await teller.recv("teller.state", state="wrap_up")
    assert wrap["wrap_up_s"] == 0 or wrap["wrap_up_s"] == 1
    await teller.send({"type": "teller.wrap_up_extend", "seconds": 5})
    extended = await teller.recv("teller.state", state="wrap_up")
    assert extended["wrap_up_s"] >= 5
    await asyncio.sleep(1.0)
    assert server.manager.router.teller("teller1").state == "wrap_up"  # extension held
    await teller.recv("teller.state", state="available", timeout=8)  # then auto-available
    await server.manager.flush()
    assert (await server.components.store.get_call(call_id))["state"] == "closed"
    await c.close()
    await teller.close()


async def test_supervisor_dashboard_and_control(server):
    teller = await server.teller("teller1")
    server.add_staff("sup1", "supervisor")
    sup = await SignalClient.open(server.ws_url, cookies=await server.login("sup1"))
    await sup.request({"type": "hello"}, "welcome")
    c = await server.customer("c-1", name="Ada Customer")
    await accept_call(teller, c)
    while True:  # boards pushed before the accept (available, then offered) may be queued
        board = await sup.recv("dashboard", timeout=3)
        row = next(t for t in board["tellers"] if t["username"] == "teller1")
        if row["state"] not in ("available", "offered"):
            break
    assert row["state"] == "busy" and row["serving"] == "Ada Customer"
    assert board["service"]["answered"] == 1 and board["service"]["service_level"] == 1.0
    assert board["service"]["aht_s"] == 180 and board["service"]["aht_measured"] is False
    f = board["staffing"]  # one call in the last 30 min at the default 180 s: 0.1 Erlang
    assert (f["offered"], f["traffic_erlangs"], f["tellers_needed"], f["scheduled_needed"],
            f["staffed_now"]) == (1, 0.1, 1, 2, 1)
    await sup.send({"type": "supervisor.set_teller", "username": "teller1", "status": "break"})
    err = await sup.error("wrong_state")
    assert "in a call" in err["message"]
    await c.send({"type": "call.hangup"})
    await teller.recv("teller.state", state="wrap_up")
    await sup.send({"type": "supervisor.set_teller", "username": "teller1", "status": "break",
                    "reason": "coaching"})
    forced = await teller.recv("teller.state", state="break")
    assert forced["reason"] == "coaching"
    # a teller may not use supervisor control
    await teller.send({"type": "supervisor.set_teller", "username": "teller1",
                       "status": "offline"})
    await teller.error("forbidden")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_ssl())) as s:
        metrics = await (await s.get(f"{server.url}/metrics")).text()
    node = server.components.node
    assert f'vteller_service_level{{node="{node}"}} 1.0' in metrics
    assert any(line.startswith("vteller_tellers{") and 'state="break"' in line
               and f'node="{node}"' in line and line.endswith(" 1.0")
               for line in metrics.splitlines())
    for s_ in (sup, c, teller):
        await s_.close()


async def test_abandon_recorded_with_reason_and_wait(server):
    c = await server.customer("c-1")
    status = await c.request({"type": "queue.join"}, "queue.status", state="queued")
    await asyncio.sleep(0.3)
    await c.send({"type": "queue.leave"})
    await c.recv("call.ended")
    await server.manager.flush()
    record = await server.components.store.get_call(status["call_id"])
    assert record["state"] == "abandoned" and record["end_reason"] == "left"
    assert record["ended_at"] - record["queued_at"] >= 0.3
    summary = server.manager.dashboard().service
    assert summary["abandoned"] == 1 and summary["abandon_rate"] == 1.0
    await c.close()


async def test_service_statistics_survive_a_restart(tmp_path):
    """The dashboard's last hour is rebuilt from the call records when a node starts
    (after a restart or a failover) instead of starting empty."""
    from tests.conftest import make_settings, start_server

    settings = make_settings(tmp_path)
    runner, server = await start_server(settings)
    teller = await server.teller("teller1")
    customer = await server.customer("c-1")
    await accept_call(teller, customer)
    await asyncio.sleep(0.2)
    await customer.send({"type": "call.hangup"})
    await teller.recv("teller.state", state="wrap_up")
    leaver = await server.customer("c-2")
    await leaver.request({"type": "queue.join"}, "queue.status", state="queued")
    await asyncio.sleep(0.3)
    await leaver.send({"type": "queue.leave"})
    await leaver.recv("call.ended")
    before = server.manager.dashboard().service
    assert (before["answered"], before["abandoned"]) == (1, 1)
    for sig in (teller, customer, leaver):
        await sig.close()
    await runner.cleanup()
    server.components.store.close()

    runner, again = await start_server(settings)  # same database: a restart
    try:
        after = again.manager.dashboard().service
        assert (after["answered"], after["abandoned"]) == (1, 1)
        assert after["abandon_rate"] == 0.5 and after["aht_measured"]
        assert 0.15 < after["aht_s"] < 30  # talk time of the one answered call
    finally:
        await runner.cleanup()
        again.components.store.close()
