"""Every teller and call transition: the legal ones work, the illegal ones are refused."""

from __future__ import annotations

import itertools

import pytest

from vteller.calls.session import TRANSITIONS as CALL_T
from vteller.calls.session import Call, CallState
from vteller.routing import IllegalTransition, TellerState, TellerStatus
from vteller.routing.tellers import TRANSITIONS as TELLER_T

# The expected transitions, written out here (not read from the tables under test).
T = TellerState
TELLER_ALLOWED = {
    (T.OFFLINE, T.AVAILABLE), (T.OFFLINE, T.BREAK),
    (T.AVAILABLE, T.OFFERED), (T.AVAILABLE, T.BREAK), (T.AVAILABLE, T.OFFLINE),
    (T.OFFERED, T.BUSY), (T.OFFERED, T.AVAILABLE), (T.OFFERED, T.BREAK),
    (T.OFFERED, T.OFFLINE),
    (T.BUSY, T.WRAP_UP),
    (T.WRAP_UP, T.AVAILABLE), (T.WRAP_UP, T.BREAK), (T.WRAP_UP, T.OFFLINE),
    (T.BREAK, T.AVAILABLE), (T.BREAK, T.OFFLINE),
}
C = CallState
CALL_ALLOWED = {
    (C.QUEUED, C.OFFERED), (C.QUEUED, C.ABANDONED),
    (C.OFFERED, C.QUEUED), (C.OFFERED, C.CONNECTING), (C.OFFERED, C.ABANDONED),
    (C.CONNECTING, C.ACTIVE), (C.CONNECTING, C.WRAP_UP), (C.CONNECTING, C.FAILED),
    (C.ACTIVE, C.WRAP_UP), (C.ACTIVE, C.FAILED),
    (C.WRAP_UP, C.CLOSED),
    (C.FAILED, C.CLOSED),
}


@pytest.mark.parametrize("src,dst", list(itertools.product(TellerState, TellerState)))
def test_teller_transition(src, dst):
    t = TellerStatus("t", state=src)
    if (src, dst) in TELLER_ALLOWED:
        moved = t.moved(dst, "lunch")
        assert moved.state == dst
        assert moved.reason == ("lunch" if dst == TellerState.BREAK else None)
    else:
        with pytest.raises(IllegalTransition):
            t.moved(dst)
    assert t.state == src  # a value: never changed in place


def test_the_tables_hold_exactly_the_expected_transitions():
    assert {(a, b) for a, bs in TELLER_T.items() for b in bs} == TELLER_ALLOWED
    assert {(a, b) for a, bs in CALL_T.items() for b in bs} == CALL_ALLOWED


@pytest.mark.parametrize("src,dst", list(itertools.product(CallState, CallState)))
def test_call_transition(src, dst):
    c = Call("call-0001", "customer:x", "general", "en", state=src)
    if (src, dst) in CALL_ALLOWED:
        c.to(dst)
        assert c.state == dst
    else:
        with pytest.raises(IllegalTransition):
            c.to(dst)


def test_terminal_call_states_have_no_exit():
    assert not CALL_T[CallState.CLOSED] and not CALL_T[CallState.ABANDONED]


def test_call_ids_never_start_with_a_dash():
    """Call ids name folders and objects and are typed into `vteller audit verify ID`,
    where a leading '-' reads as an option (1 in 64 token_urlsafe ids did)."""
    from vteller.calls.session import new_call_id

    ids = [new_call_id() for _ in range(5000)]
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == 5000 and all(len(i) == 16 for i in ids)
