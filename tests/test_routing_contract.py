"""One contract for every routing store: the in-memory `Router` and `RedisRouter` on a
real Redis (127.0.0.1:6379, or VTELLER_TEST_REDIS_URL; skipped without one unless
VTELLER_REQUIRE_REDIS is set, as in CI). The policy (classes, aging, skills, languages,
elderly preference, random assignment, declines) and the atomic steps (offer, accept
or abandon, teller transitions) must come out the same in both; a second `RedisRouter`
on the same keys stands for a second node."""

from __future__ import annotations

import collections
import os
import random
import uuid
from collections.abc import Iterator

import pytest
import redis

from vteller.routing import Request, Router, RoutingPolicy, TellerProfile, TellerState
from vteller.routing.redis_store import RedisRouter, RoutingUnavailable
from vteller.routing.sim import Scenario, roster
from vteller.routing.store import RoutingStore, make_router
from vteller.routing.tellers import IllegalTransition

REDIS_URL = os.environ.get("VTELLER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        if os.environ.get("VTELLER_REQUIRE_REDIS"):
            raise
        pytest.skip(f"no Redis at {REDIS_URL}")
    return client


class Stores:
    """Makes stores of one kind; `peer` is another node's view of the same state."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.prefix = f"{{vt-test-{uuid.uuid4().hex[:12]}}}:"
        self._made: list[RedisRouter] = []

    def __call__(self, policy: RoutingPolicy | None = None, rng: random.Random | None = None
                 ) -> RoutingStore:
        policy = policy or RoutingPolicy()
        if self.kind == "memory":
            return Router(policy, rng=rng)
        self.prefix = f"{{vt-test-{uuid.uuid4().hex[:12]}}}:"  # a fresh deployment
        store = RedisRouter(policy, redis_client(), self.prefix, rng=rng)
        self._made.append(store)
        return store

    def peer(self, store: RoutingStore) -> RoutingStore:
        if isinstance(store, Router):
            return store  # one process: the same state
        assert isinstance(store, RedisRouter)
        other = RedisRouter(store.policy, redis_client(), store._p)
        self._made.append(other)
        return other

    def close(self) -> None:
        for store in self._made:
            store.clear()


@pytest.fixture(params=["memory", "redis"])
def make(request: pytest.FixtureRequest) -> Iterator[Stores]:
    stores = Stores(request.param)
    yield stores
    stores.close()


def req(call_id: str, at: float, *segs: str, bt: str = "general", lang: str = "en") -> Request:
    return Request(call_id, bt, lang, frozenset(segs), enqueued_at=at)


def teller(store: RoutingStore, name: str, since: float = 0.0, **profile: object) -> None:
    store.set_profile(name, TellerProfile(**profile))  # type: ignore[arg-type]
    store.set_state(name, TellerState.AVAILABLE, now=since)


def accept(store: RoutingStore, now: float) -> tuple[str, str] | None:
    """Offer the next match and accept it (the teller then serves it)."""
    match = store.next_match(now)
    if match is None:
        return None
    request, status = match
    assert store.offer(request.call_id, status.username, now=now) is not None
    assert store.remove(request.call_id) is not None
    store.set_state(status.username, TellerState.BUSY, now=now)
    return request.call_id, status.username


# ---------------------------------------------------------------- the policy
def test_priority_order_then_fifo_within_class(make):
    r = make(RoutingPolicy(elderly_widen_after_s=0))
    for call_id, at, segs in [("s1", 0, ()), ("v1", 1, ("vip",)), ("p1", 2, ("military",)),
                              ("g1", 3, ("elderly",)), ("g2", 4, ("elderly",))]:
        r.enqueue(req(call_id, at, *segs))
    order = []
    for i in range(5):
        teller(r, f"t{i}", since=float(i))
        order.append(accept(r, 10.0)[0])
    assert order == ["g1", "g2", "p1", "v1", "s1"]
    assert r.waiting_count() == 0 and r.next_match(10.0) is None


def test_equal_enqueue_times_keep_arrival_order(make):
    r = make()
    for call_id in ("b", "a", "c"):
        r.enqueue(req(call_id, 5.0))
    teller(r, "t")
    assert r.next_match(6.0)[0].call_id == "b"
    assert [x.call_id for x in sorted(r.waiting(), key=lambda x: x.key)] == ["b", "a", "c"]


def test_aging_prevents_starvation(make):
    policy = RoutingPolicy(elderly_widen_after_s=0)
    r = make(policy)
    r.enqueue(req("old-standard", 0.0))
    r.enqueue(req("fresh-green", 400.0, "elderly"))
    teller(r, "t1")
    # at t=400 the standard request waited 400 s: 0 + 400 > 300 + 0
    assert r.next_match(400.0)[0].call_id == "old-standard"
    r2 = make(policy)
    r2.enqueue(req("standard", 0.0))
    r2.enqueue(req("green", 100.0, "elderly"))
    teller(r2, "t1")
    assert r2.next_match(100.0)[0].call_id == "green"


def test_skill_and_language_eligibility(make):
    r = make()
    r.enqueue(req("card", 0, bt="card_issuance"))
    r.enqueue(req("zh", 1, lang="zh"))
    teller(r, "generalist", skills={"general": 1.0})
    assert r.next_match(5.0) is None  # nobody can serve either request
    teller(r, "card-teller", skills={"card_issuance": 0.8})
    request, chosen = r.next_match(5.0)
    assert (request.call_id, chosen.username) == ("card", "card-teller")
    assert r.staffed_for(r.request("zh"), 0.0) == 0
    teller(r, "zh-teller", skills={"general": 0.5}, languages=frozenset({"en", "zh"}))
    assert r.offer("card", "card-teller", now=5.0) is not None
    assert r.next_match(5.0)[1].username == "zh-teller"
    assert r.staffed_for(r.request("zh"), 5.0) == 1


def test_elderly_prefer_certified_then_widen(make):
    r = make(RoutingPolicy(elderly_widen_after_s=10))
    r.enqueue(req("grandma", 0.0, "elderly"))
    teller(r, "plain")
    assert r.next_match(5.0) is None  # only certified tellers during the first 10 s
    assert r.next_match(10.5)[1].username == "plain"
    teller(r, "certified", certifications=frozenset({"elderly_care"}))
    assert r.next_match(5.0)[1].username == "certified"


def test_best_score_then_longest_idle(make):
    r = make()
    r.enqueue(req("c", 0, bt="card_issuance"))
    teller(r, "weak", since=0.0, skills={"card_issuance": 0.3})
    teller(r, "strong", since=5.0, skills={"card_issuance": 0.9})
    assert r.next_match(10.0)[1].username == "strong"
    r2 = make()
    r2.enqueue(req("c", 0))
    teller(r2, "recent", since=9.0)
    teller(r2, "idle-longest", since=1.0)
    assert r2.next_match(10.0)[1].username == "idle-longest"


def test_random_assignment_is_uniform_over_eligible(make):
    r = make(rng=random.Random(42))
    names = ["a", "b", "c", "d"]
    for i, name in enumerate(names):
        teller(r, name, skills={"video_ident": 0.2 + 0.2 * i})  # scores differ on purpose
    teller(r, "no-skill", skills={"general": 1.0})
    counts: collections.Counter[str] = collections.Counter()
    trials = 2000
    for i in range(trials):
        r.enqueue(req(f"v{i}", i, bt="video_ident"))
        request, chosen = r.next_match(float(i))
        counts[chosen.username] += 1
        r.remove(request.call_id)
    assert set(counts) == set(names)
    expected = trials / len(names)
    chi2 = sum((counts[n] - expected) ** 2 / expected for n in names)
    assert chi2 < 16.27, counts  # p = 0.001 for 3 degrees of freedom


def test_declined_request_goes_to_another_teller_and_keeps_place(make):
    r = make()
    r.enqueue(req("first", 0.0))
    r.enqueue(req("second", 1.0))
    teller(r, "t1")
    request, _ = r.next_match(2.0)
    assert request.call_id == "first" and r.offer("first", "t1", now=2.0) is not None
    assert r.position("first", 2.0) is None  # offered: out of the line
    r.requeue("first", declined_by="t1", now=2.0)
    r.set_state("t1", TellerState.AVAILABLE, now=2.0)
    assert r.position("first", 2.0) == 1  # back at its place
    assert r.request("first").declined_by == {"t1": 2.0}
    assert r.next_match(2.0)[0].call_id == "second"  # t1 is not re-offered "first"
    assert r.next_match(61.9)[0].call_id == "second"  # remembered for 60 s ...
    assert r.next_match(62.1)[0].call_id == "first"  # ... then it may be offered again
    teller(r, "t2", since=5.0)
    r.set_state("t1", TellerState.OFFLINE)
    assert r.next_match(6.0) == (r.request("first"), r.teller("t2"))


def test_position_counts_higher_priority_same_pool(make):
    r = make()
    r.enqueue(req("s1", 0.0))
    r.enqueue(req("s2", 1.0))
    r.enqueue(req("g1", 2.0, "elderly"))
    r.enqueue(req("other-pool", 0.0, bt="card_issuance"))
    assert [r.position(c, 3.0) for c in ("g1", "s1", "s2")] == [1, 2, 3]
    assert r.position("other-pool", 3.0) == 1
    assert r.positions(3.0) == {"g1": 1, "s1": 2, "s2": 3, "other-pool": 1}
    assert r.waiting_count() == 4


# ---------------------------------------------------------------- atomic steps
def test_offer_is_one_step_and_one_winner(make):
    """Two nodes decide at once: the request goes to exactly one teller, and a teller
    gets exactly one request."""
    a = make()
    b = make.peer(a)
    a.enqueue(req("c1", 0.0))
    a.enqueue(req("c2", 0.5))
    teller(a, "t1")
    teller(b, "t2")
    won = a.offer("c1", "t1", now=1.0)
    assert won is not None and won.state == TellerState.OFFERED and won.since == 1.0
    assert b.offer("c1", "t2", now=1.0) is None  # the request is taken
    assert b.teller("t2").state == TellerState.AVAILABLE  # ... and t2 is untouched
    assert b.offer("c2", "t1", now=1.0) is None  # the teller is taken
    assert b.request("c2") is not None and b.position("c2", 1.0) == 1  # still waiting
    assert b.offer("c2", "t2", now=1.0) is not None
    assert b.waiting_count() == 0 and a.next_match(2.0) is None


def test_accept_or_abandon_one_wins(make):
    a = make()
    b = make.peer(a)
    a.enqueue(req("c1", 0.0))
    teller(a, "t1")
    a.offer("c1", "t1", now=1.0)
    got = a.remove("c1")  # the teller accepts ...
    assert got is not None and got.call_id == "c1" and got.enqueued_at == 0.0
    assert b.remove("c1") is None  # ... and the customer's hang-up finds nothing
    a.enqueue(req("c2", 2.0))
    assert b.remove("c2").call_id == "c2" and a.remove("c2") is None  # abandon first
    with pytest.raises(KeyError):
        a.requeue("c2", None, 3.0)  # a ring timer firing late: nothing to requeue


def test_enqueue_twice_keeps_the_first(make):
    r = make()
    r.enqueue(req("c1", 0.0))
    r.enqueue(req("c1", 9.0, "elderly"))
    assert r.waiting_count() == 1 and r.request("c1").enqueued_at == 0.0


def test_teller_transitions_are_checked_in_the_same_step(make):
    a = make()
    b = make.peer(a)
    assert a.teller("new").state == TellerState.OFFLINE  # never seen: offline
    with pytest.raises(IllegalTransition):
        a.set_state("new", TellerState.BUSY)  # offline -> busy is not allowed
    a.set_state("t", TellerState.BREAK, reason="lunch", now=1.0)
    assert b.teller("t").reason == "lunch"
    b.set_reason("t", "training")
    assert a.teller("t").reason == "training"
    a.set_state("t", TellerState.AVAILABLE, now=2.0)
    b.set_reason("t", "ignored")  # not on break: no reason
    status = a.teller("t")
    assert (status.state, status.reason, status.since) == (TellerState.AVAILABLE, None, 2.0)
    with pytest.raises(IllegalTransition) as err:
        b.set_state("t", TellerState.WRAP_UP)
    assert err.value.current == "available"
    snapshot = a.teller("t")
    b.set_state("t", TellerState.OFFLINE)
    assert snapshot.state == TellerState.AVAILABLE  # a snapshot, not a live view
    assert a.teller("t").state == TellerState.OFFLINE


def test_profiles_and_forgetting(make):
    r = make()
    profile = TellerProfile(skills={"card_issuance": 0.7}, languages=frozenset({"zh", "en"}),
                            certifications=frozenset({"elderly_care"}), capability=0.9)
    r.set_profile("t", profile)
    assert r.teller("t").profile == profile and r.teller("t").state == TellerState.OFFLINE
    r.set_state("t", TellerState.AVAILABLE, now=1.0)
    assert r.teller("t").profile == profile  # a transition keeps the profile
    assert [t.username for t in r.tellers()] == ["t"]
    r.forget_teller("t")
    assert list(r.tellers()) == [] and r.teller("t").state == TellerState.OFFLINE
    r.enqueue(req("c", 0.0))
    assert r.next_match(1.0) is None  # a forgotten teller is not offered anything


# ---------------------------------------------------------------- the same outcomes
def _replay(r: RoutingStore, seed: int) -> list[tuple[str, str, float]]:
    """A morning of arrivals, declines, acceptances and tellers coming and going, as the
    call host drives the store; returns every (call, teller, time) offered."""
    rng = random.Random(seed)
    sc = Scenario()
    names = list(roster(12, random.Random(seed)).items())
    for name, profile in names:
        r.set_profile(name, profile)
    offers, serving = [], {}
    now = 0.0
    for step in range(400):
        now += rng.expovariate(1.0)
        if rng.random() < 0.5:
            segs = frozenset(s for s, p in sc.segment_mix.items() if rng.random() < p)
            bt = rng.choices(list(sc.business_mix), list(sc.business_mix.values()))[0]
            lang = rng.choices(list(sc.language_mix), list(sc.language_mix.values()))[0]
            r.enqueue(Request(f"c{step}", bt, lang, segs, enqueued_at=now))
        name = names[rng.randrange(len(names))][0]
        state = r.teller(name).state
        if state == TellerState.OFFLINE:
            r.set_state(name, TellerState.AVAILABLE, now=now)
        elif state == TellerState.BUSY and rng.random() < 0.3:
            r.set_state(name, TellerState.WRAP_UP, now=now)
            r.set_state(name, TellerState.AVAILABLE, now=now)
            serving.pop(name, None)
        elif state == TellerState.AVAILABLE and rng.random() < 0.05:
            r.set_state(name, TellerState.BREAK, "coffee", now=now)
        elif state == TellerState.BREAK and rng.random() < 0.5:
            r.set_state(name, TellerState.AVAILABLE, now=now)
        if rng.random() < 0.03 and (waiting := sorted(w.call_id for w in r.waiting())):
            r.remove(rng.choice(waiting))  # a customer gives up
        while (match := r.next_match(now)) is not None:
            request, status = match
            assert r.offer(request.call_id, status.username, now=now) is not None
            offers.append((request.call_id, status.username, round(now, 6)))
            if rng.random() < 0.15:  # declined: back at its place
                r.requeue(request.call_id, status.username, now)
                r.set_state(status.username, TellerState.AVAILABLE, now=now)
            else:
                r.remove(request.call_id)
                r.set_state(status.username, TellerState.BUSY, now=now)
                serving[status.username] = request.call_id
    return offers


def test_redis_store_makes_the_same_decisions_as_memory(make):
    """The same morning replayed on both stores offers the same calls to the same
    tellers at the same moments (random assignment drawn from the same seed)."""
    if make.kind == "memory":
        pytest.skip("compares the Redis store with memory")
    memory = _replay(Router(RoutingPolicy(), rng=random.Random(5)), seed=11)
    shared = _replay(make(RoutingPolicy(), rng=random.Random(5)), seed=11)
    assert len(memory) > 100
    assert shared == memory


# ---------------------------------------------------------------- Redis itself
def test_unreachable_redis_is_a_typed_error_naming_the_cause():
    with pytest.raises(RoutingUnavailable, match="unreachable"):
        make_router(RoutingPolicy(), "redis://127.0.0.1:1/0")  # nothing listens on port 1
    store = RedisRouter(RoutingPolicy(), redis.Redis(host="127.0.0.1", port=1,
                                                     socket_connect_timeout=0.5))
    for op in (lambda: store.enqueue(req("c", 0.0)), lambda: store.next_match(1.0),
               lambda: store.teller("t"), lambda: store.waiting_count()):
        with pytest.raises(RoutingUnavailable):
            op()
    store.close()


def test_make_router_chooses_by_setting():
    assert isinstance(make_router(RoutingPolicy()), Router)
    redis_client()  # skips without a Redis
    store = make_router(RoutingPolicy(), REDIS_URL, prefix="{vt-test-factory}:")
    assert isinstance(store, RedisRouter)
    store.clear()



# ---------------------------------------------------------------- booked appointments
def booked(call_id: str, at: float, teller_name: str, until: float, *segs: str) -> Request:
    r = req(call_id, at, *segs)
    r.booked_teller, r.booked_until = teller_name, until
    return r


def test_the_booked_teller_takes_their_booking_first(make):
    """An older green-channel customer waits, and a customer booked with teller `b`
    arrives: `b` gets the booking; `a` gets the green-channel customer, never the
    booking while it is held for `b`."""
    r = make(RoutingPolicy(elderly_widen_after_s=0))
    r.enqueue(req("green", 0.0, "elderly"))
    r.enqueue(booked("appt", 50.0, "b", until=200.0))
    teller(r, "a", since=0.0)
    teller(r, "b", since=1.0)
    request, status = r.next_match(60.0)
    assert (request.call_id, status.username) == ("appt", "b")
    assert r.offer("appt", "b", now=60.0) is not None and r.remove("appt") is not None
    request, status = r.next_match(60.0)
    assert (request.call_id, status.username) == ("green", "a")


def test_a_booking_waits_for_its_teller_until_the_hold_ends(make):
    """The booked teller is busy: nobody else is offered the booking before
    `booked_until`; after it, any eligible teller is, ranked as any request."""
    r = make()
    r.enqueue(booked("appt", 10.0, "b", until=100.0))
    r.set_profile("b", TellerProfile())
    r.set_state("b", TellerState.AVAILABLE, now=0.0)
    r.set_state("b", TellerState.BREAK, now=0.0)
    teller(r, "a")
    assert r.next_match(99.0) is None
    request, status = r.next_match(100.0)
    assert (request.call_id, status.username) == ("appt", "a")


def test_bookings_of_busy_tellers_do_not_block_the_others(make):
    """Five bookings with teller `busy` (more than the heads looked at per group) and
    one with `free`: `free` gets theirs, whatever sits before it in the queue."""
    r = make()
    for i in range(5):
        r.enqueue(booked(f"busy-{i}", float(i), "busy", until=1000.0))
    r.enqueue(booked("mine", 9.0, "free", until=1000.0))
    teller(r, "free")
    request, status = r.next_match(10.0)
    assert (request.call_id, status.username) == ("mine", "free")
    peer = make.peer(r)  # another node reads the booking as written
    waiting = {w.call_id: w for w in peer.waiting()}
    assert waiting["mine"].booked_teller == "free" and waiting["mine"].booked_until == 1000.0
