"""The fuzz campaign: schemathesis against the published OpenAPI description (valid and
invalid requests to every operation, authenticated as each kind of caller), and
hypothesis-generated signaling messages and SDP offers. The property: no 5xx, no
`internal` error, no unhandled exception logged, and the server still answers."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest
import requests
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from tests.conftest import accept_call
from tests.helpers import Party, SignalClient
from vteller.media.leg import MediaNegotiationError, check_offer, filter_candidates
from vteller.protocol import CLIENT_MESSAGES
from vteller.protocol.messages import ROLES_FOR

pytestmark = pytest.mark.slow  # about 6 minutes: `uv run pytest -m slow`

REST_REQUESTS = 10_000
WS_MESSAGES = 10_000
SDP_OFFERS = 10_000


class ErrorLog(logging.Handler):
    """Every ERROR record any logger writes (aiohttp's 'Error handling request',
    our `log.exception`s) while the campaign runs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "asyncio" and record.getMessage().startswith("Unclosed client"):
            return  # a test client of an earlier test garbage-collected: not the server
        self.records.append(record)


@pytest.fixture
def error_log():  # type: ignore[no-untyped-def]
    """stdlib logging (aiohttp) and structlog (vteller) errors, both."""
    import structlog

    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    with structlog.testing.capture_logs() as events:
        yield handler
        for event in events:
            if event.get("log_level") in ("error", "critical", "exception"):
                handler.records.append(logging.makeLogRecord({"msg": str(event)}))
    root.removeHandler(handler)


def _fuzz_rest(base: str, cookies: dict[str, str], backend_key: str,
               counts: Counter[str]) -> list[str]:
    import schemathesis
    from schemathesis import GenerationMode

    urllib3.disable_warnings()
    doc = requests.get(f"{base}/api/openapi.json", verify=False, timeout=10).json()
    schema = schemathesis.openapi.from_dict(doc)
    # logout last: it ends the session whose cookie every other request carries
    operations = sorted((r.ok() for r in schema.get_all_operations()),
                        key=lambda op: op.path == "/api/logout")
    per_op = 450  # each mode; an operation without inputs runs out at once
    session = requests.Session()
    session.verify = False
    failures: list[str] = []
    # valid credentials on every request: each endpoint takes what it needs
    headers = {"Authorization": f"Bearer {backend_key}", "Origin": base}
    lock = threading.Lock()
    timing: list[str] = []

    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=per_op, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                merged = {**headers, **(case.headers or {})}
                try:
                    response = case.call(base_url=base, session=session, headers=merged,
                                         cookies=cookies, timeout=30, verify=False)
                except (requests.exceptions.InvalidHeader, UnicodeError, ValueError):
                    with lock:
                        counts["refused by the client library"] += 1
                    return  # the HTTP client would not send it: nothing reached us
                with lock:
                    counts["requests"] += 1
                    counts[f"{response.status_code // 100}xx"] += 1
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path}: "
                                    f"{response.status_code} {response.text[:200]}")

            started, before = time.monotonic(), counts["requests"]
            try:
                run()
                timing.append(f"{op.method.upper()} {op.path} {mode.value}: "
                              f"{counts['requests'] - before} in "
                              f"{time.monotonic() - started:.1f} s")
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                counts["operations without invalid inputs"] += 1
    print("\n".join(timing))
    return failures


@pytest.mark.timeout(900)
async def test_openapi_fuzz_no_5xx_and_no_unhandled_exception(server, error_log):
    c = server.components
    server.add_staff("fuzzaud", role="auditor", profile={"permissions": ["review_access"]})
    cookies = await server.login("fuzzaud")
    from vteller.auth.service import ServiceAuth

    backend_key = ServiceAuth(c.store).create("fuzz-backend")
    # a real recorded-free session to find, open and hold
    teller = await server.teller("teller1")
    customer = await server.customer("c-fuzz")
    await accept_call(teller, customer)
    await server.manager.flush()
    counts: Counter[str] = Counter()
    failures = await asyncio.to_thread(_fuzz_rest, server.url, cookies, backend_key, counts)
    print("REST fuzz:", dict(counts))
    assert not failures, failures[:10]
    assert counts["requests"] >= REST_REQUESTS, counts
    assert not error_log.records, [r.getMessage() for r in error_log.records[:5]]
    async with __import__("aiohttp").ClientSession() as s:  # still serving
        r = await s.get(f"{server.url}/readyz", ssl=False)
        assert r.status == 200
    for sig in (teller, customer):
        await sig.close()


# ---- signaling messages ---------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=12)
FIELDS = ["id", "call_id", "status", "token", "resume", "v", "decision", "reason_code",
          "notes", "purpose", "destination", "accept", "audio", "video", "business_type",
          "language", "username", "reason", "seconds", "granted", "sdp"]


@st.composite
def messages(draw: Any) -> str:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.text(max_size=200))  # not JSON, or any JSON text
    if kind == 1:
        return json.dumps(draw(JSON))
    msg: dict[str, Any] = {"type": draw(st.sampled_from(sorted(set(CLIENT_MESSAGES) - {"hello"})))}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        msg[name] = draw(JSON)
    if kind == 2 and "call_id" in msg:
        msg["call_id"] = draw(st.text(min_size=8, max_size=20))
    return json.dumps(msg)


@pytest.mark.settings(messages_per_second=1_000_000, message_burst=1_000_000,
                      hello_timeout_s=120)
async def test_signaling_fuzz_from_every_role_during_a_call(server, error_log):
    teller = await server.teller("teller1")
    customer = await server.customer("c-wsfuzz")
    await accept_call(teller, customer)
    server.add_staff("sup1", role="supervisor")
    supervisor = await SignalClient.open(server.ws_url, cookies=await server.login("sup1"))
    await supervisor.request({"type": "hello"}, "welcome")
    anonymous = await SignalClient.open(server.ws_url)
    clients = [teller, customer, supervisor, anonymous]
    sample: list[str] = []

    @settings(max_examples=WS_MESSAGES * 6 // 5, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(messages())
    def collect(text: str) -> None:
        sample.append(text)

    collect()
    rng = random.Random(7)
    sent = 0
    for i in range(0, len(sample), 50):  # in batches, paced under the per-connection limit
        client = rng.choice(clients)
        for text in sample[i:i + 50]:
            if ('"call.hangup"' in text or '"queue.leave"' in text
                    or '"teller.status"' in text):
                continue  # would end the call the rest of the campaign needs
            await client.send(text)
            sent += 1
        await client.request({"type": "ping"}, "pong")  # paced: answered before the next batch
    internal = [m for c in clients for m in c.inbox if m.get("code") == "internal"]
    assert sent >= WS_MESSAGES, sent
    assert not internal, internal[:5]
    assert not error_log.records, [r.getMessage() for r in error_log.records[:5]]
    for c in clients:
        assert not c.closed.is_set() or c is anonymous
    print(f"signaling fuzz: {sent} messages from 4 roles, errors by code:",
          dict(Counter(m.get("code") for c in clients for m in c.inbox if m["type"] == "error")))
    assert set(ROLES_FOR) == set(CLIENT_MESSAGES)
    for c in clients:
        await c.close()


# ---- SDP offers -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_offer() -> str:
    async def make() -> str:
        party = Party("customer", encoded=True)
        await party.pc.setLocalDescription(await party.pc.createOffer())
        sdp = party.pc.localDescription.sdp
        await party.close()
        return sdp
    return asyncio.run(make())


def test_sdp_fuzz_only_typed_refusals(real_offer):
    import ipaddress

    lines = real_offer.split("\r\n")
    blocked = [ipaddress.ip_network("10.0.0.0/8")]
    outcomes: Counter[str] = Counter()

    @settings(max_examples=SDP_OFFERS, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data: Any) -> None:
        mutated = list(lines)
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(mutated) - 1))
            op = data.draw(st.integers(0, 3))
            if op == 0:
                del mutated[i]
            elif op == 1:
                mutated[i] = data.draw(st.text(max_size=60))
            elif op == 2:
                mutated.insert(i, mutated[data.draw(st.integers(0, len(mutated) - 1))])
            else:
                line = mutated[i]
                j = data.draw(st.integers(0, max(0, len(line) - 1)))
                mutated[i] = line[:j] + data.draw(st.text(max_size=5)) + line[j + 1:]
        sdp = "\r\n".join(mutated)
        try:
            filtered, _ = filter_candidates(sdp, blocked)
            check_offer("customer", filtered, None)
            outcomes["accepted"] += 1
        except MediaNegotiationError as exc:
            outcomes[exc.code] += 1

    run()
    print("SDP fuzz:", dict(outcomes))
    assert sum(outcomes.values()) == SDP_OFFERS
    assert outcomes["bad_sdp"] > 0 and outcomes["accepted"] > 0
