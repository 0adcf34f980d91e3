"""Every teller and call transition: the legal ones work, the illegal ones are refused."""

from __future__ import annotations

import itertools

import pytest

from vteller.calls.session import TRANSITIONS as CALL_T
from vteller.calls.session import Call, CallState
from vteller.routing import FifoRouter, IllegalTransition, TellerState, TellerStatus
from vteller.routing.tellers import TRANSITIONS as TELLER_T


@pytest.mark.parametrize("src,dst", list(itertools.product(TellerState, TellerState)))
def test_teller_transition(src, dst):
    t = TellerStatus("t", state=src)
    if dst in TELLER_T[src]:
        t.to(dst, "lunch")
        assert t.state == dst
        assert t.reason == ("lunch" if dst == TellerState.BREAK else None)
    else:
        with pytest.raises(IllegalTransition):
            t.to(dst)
        assert t.state == src


@pytest.mark.parametrize("src,dst", list(itertools.product(CallState, CallState)))
def test_call_transition(src, dst):
    c = Call("call-0001", "customer:x", "general", "en", state=src)
    if dst in CALL_T[src]:
        c.to(dst)
        assert c.state == dst
    else:
        with pytest.raises(IllegalTransition):
            c.to(dst)


def test_terminal_call_states_have_no_exit():
    assert not CALL_T[CallState.CLOSED] and not CALL_T[CallState.ABANDONED]


def test_fifo_router_orders_by_enqueue_time_and_longest_idle_teller():
    r = FifoRouter()
    r.enqueue("c2", 2.0)
    r.enqueue("c1", 1.0)
    assert [q.call_id for q in r.ordered()] == ["c1", "c2"] and r.position("c2") == 2
    assert r.next_match() is None  # no teller
    t1, t2 = r.teller("t1"), r.teller("t2")
    t2.to(TellerState.AVAILABLE)
    t1.to(TellerState.AVAILABLE)  # t2 idle longer
    req, teller = r.next_match()
    assert (req.call_id, teller.username) == ("c1", "t2")
    r.hold("c1")
    assert r.position("c1") is None and r.position("c2") == 1
    r.requeue("c1", declined_by="t2")
    assert r.position("c1") == 1  # keeps its place
    req, teller = r.next_match()
    assert (req.call_id, teller.username) == ("c1", "t1")  # t2 declined it
    r.remove("c1")
    assert r.ordered()[0].call_id == "c2"
