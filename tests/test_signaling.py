"""Signaling contract: typed errors, the connection survives them, roles, auth, origin."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.conftest import accept_call
from tests.helpers import SignalClient, insecure_ssl


async def assert_alive(sig: SignalClient) -> None:
    pong = await sig.request({"type": "ping", "id": "alive"}, "pong")
    assert pong["t"] > 0


async def test_errors_are_typed_and_recoverable(server):
    sig = await server.customer()
    cases = [
        ("{not json", "bad_json", None),
        ("[1, 2]", "invalid_message", None),
        (json.dumps({"type": "launch.rockets", "id": "m1"}), "unknown_type", "m1"),
        (json.dumps({"type": "queue.join", "id": "m2", "business_type": "Bad Type!"}),
         "invalid_message", "m2"),
        (json.dumps({"type": "queue.join", "extra": 1}), "invalid_message", "queue.join"),
        (json.dumps({"type": "offer.accept", "id": "m3", "call_id": "abcdefgh12"}),
         "forbidden", "m3"),
        (json.dumps({"type": "call.hangup", "id": "m4"}), "wrong_state", "m4"),
        (json.dumps({"type": "hello", "id": "m5", "token": "x"}), "wrong_state", "m5"),
        (json.dumps({"type": "ping", "pad": "x" * 70_000}), "too_large", None),
        (json.dumps({"type": "webrtc.offer", "id": "m6", "sdp": "v=0 nothing"}), "wrong_state",
         "m6"),
    ]
    for raw, code, re in cases:
        await sig.send(raw)
        err = await sig.error(code)
        assert err["re"] == re, (raw[:40], err)
        assert err["message"]
        await assert_alive(sig)
    await sig.send(b"binary".decode())  # text that is not JSON
    await sig.error("bad_json")
    await sig.ws.send_bytes(b"\x00\x01")
    await sig.error("invalid_message")
    await assert_alive(sig)
    await sig.close()


async def test_validation_error_does_not_echo_values(server):
    sig = await server.customer()
    await sig.send({"type": "queue.join", "language": "<script>secret-value"})
    err = await sig.error("invalid_message")
    assert "secret-value" not in err["message"] and "language" in err["message"]
    await sig.close()


async def test_message_before_hello_is_refused_but_connection_stays(server):
    sig = await SignalClient.open(server.ws_url)
    await sig.send({"type": "queue.join"})
    await sig.error("unauthenticated")
    await sig.send({"type": "hello", "token": server.customer_token()})
    await sig.recv("welcome")
    await sig.close()


@pytest.mark.parametrize("case", ["expired", "forged", "wrong_audience", "too_long", "garbage",
                                  "alg_none"])
async def test_bad_customer_tokens_are_refused_and_closed(server, tmp_path, case):
    import time

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from vteller.auth import DevTokenIssuer

    issuer = server.components.dev_issuer
    if case == "expired":
        token = issuer.issue("c-1", "A", 1980, ttl_s=60, now=time.time() - 3600)
    elif case == "forged":
        other = DevTokenIssuer(ed25519.Ed25519PrivateKey.generate(), "bank-backend", "vteller")
        token = other.issue("c-1", "A", 1980)
    elif case == "wrong_audience":
        token = DevTokenIssuer(issuer._key, "bank-backend", "someone-else").issue("c-1", "A", 1980)
    elif case == "too_long":
        token = issuer.issue("c-1", "A", 1980, ttl_s=86400)
    elif case == "alg_none":
        now = int(time.time())
        token = jwt.encode({"sub": "c-1", "name": "A", "birth_year": 1980, "iat": now,
                            "exp": now + 60, "iss": "bank-backend", "aud": "vteller"},
                           None, algorithm="none")
    else:
        token = "not.a.token"
    sig = await SignalClient.open(server.ws_url)
    await sig.send({"type": "hello", "token": token})
    err = await sig.recv("error")
    assert err["code"] == ("token_expired" if case == "expired" else "token_invalid")
    assert "BEGIN" not in err["message"] and "key" not in err["message"].lower()
    await sig.closed.wait()  # a failed authentication closes the connection
    await sig.close()


async def test_staff_without_session_is_refused(server):
    sig = await SignalClient.open(server.ws_url, cookies={"__Host-vteller_session": "forged"})
    await sig.send({"type": "hello"})
    await sig.error("unauthenticated")
    await sig.closed.wait()
    await sig.close()


async def test_foreign_origin_is_refused(server):
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await SignalClient.open(server.ws_url, origin="https://evil.example")
    assert info.value.status == 403
    ok = await SignalClient.open(server.ws_url, origin=f"https://localhost:{server.settings.port}")
    await ok.close()


async def test_roles_are_enforced(server):
    teller = await server.teller(available=False)
    await teller.send({"type": "queue.join", "id": "q"})
    assert (await teller.error("forbidden"))["re"] == "q"
    server.add_staff("sup1", "supervisor")
    sup = await SignalClient.open(server.ws_url, cookies=await server.login("sup1"))
    await sup.request({"type": "hello"}, "welcome")
    for msg in ({"type": "teller.status", "status": "available"}, {"type": "queue.join"},
                {"type": "offer.accept", "call_id": "abcdefgh"}):
        await sup.send(msg)
        await sup.error("forbidden")
    await teller.close()
    await sup.close()


@pytest.mark.settings(messages_per_second=5, message_burst=5)
async def test_rate_limit_is_typed(server):
    sig = await server.customer()
    for _ in range(20):
        await sig.send({"type": "ping"})
    await sig.error("rate_limited")
    await sig.close()


async def test_bad_sdp_is_typed(server):
    teller = await server.teller()
    cust = await server.customer()
    await accept_call(teller, cust)
    await cust.send({"type": "webrtc.offer", "sdp": "v=0\r\nm=garbage\r\n"})
    await cust.error("bad_sdp")
    await cust.send({"type": "webrtc.offer", "sdp": "this is not sdp at all"})
    await cust.error("bad_sdp")
    # an offer without the screen m-line is refused with a reason
    from aiortc import RTCPeerConnection

    wrong = RTCPeerConnection()
    wrong.addTransceiver("audio")
    wrong.addTransceiver("video")
    await wrong.setLocalDescription(await wrong.createOffer())
    await cust.send({"type": "webrtc.offer", "sdp": wrong.localDescription.sdp})
    err = await cust.error("bad_sdp")
    assert "m-lines" in err["message"]
    await wrong.close()
    await assert_alive(cust)
    await cust.close()
    await teller.close()


async def test_healthz_readyz_metrics(server):
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_ssl())) as s:
        assert (await (await s.get(f"{server.url}/healthz")).json()) == {"status": "ok"}
        assert (await s.get(f"{server.url}/readyz")).status == 200
        metrics = await (await s.get(f"{server.url}/metrics")).text()
        assert "vteller_ws_connections" in metrics
        node = str(server.components.node)  # every sample names its node
        samples = [line for line in metrics.splitlines() if line and not line.startswith("#")]
        assert samples and all(f'node="{node}"' in line for line in samples), samples[:3]
        assert any(line.startswith("vteller_event_loop_lag_seconds{") and
                   'quantile="0.99"' in line and f'node="{node}"' in line
                   for line in samples)
        assert any(line.startswith("vteller_event_loop_delay_seconds_bucket{") and
                   'le="0.02"' in line for line in samples)
