"""Every teller, call, liveness-step and spoken-check transition: the legal ones work,
the illegal ones are refused."""

from __future__ import annotations

import itertools

import pytest

from vteller.calls.session import TRANSITIONS as CALL_T
from vteller.calls.session import Call, CallState
from vteller.identity.liveness import STEP_TRANSITIONS, Step, StepState
from vteller.identity.spoken import TRANSITIONS as SPOKEN_T
from vteller.identity.spoken import SpokenCheck, SpokenState
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


# Liveness steps and the spoken check, written out here too.

L = StepState
STEP_ALLOWED = {
    (L.PENDING, L.REST), (L.PENDING, L.SKIPPED),
    (L.REST, L.PROMPTED), (L.REST, L.FAILED), (L.REST, L.TIMED_OUT),
    (L.PROMPTED, L.ACTING), (L.PROMPTED, L.FAILED), (L.PROMPTED, L.TIMED_OUT),
    (L.ACTING, L.HOLDING), (L.ACTING, L.PASSED), (L.ACTING, L.FAILED),
    (L.ACTING, L.TIMED_OUT),
    (L.HOLDING, L.RELEASING), (L.HOLDING, L.FAILED), (L.HOLDING, L.TIMED_OUT),
    (L.RELEASING, L.PASSED), (L.RELEASING, L.FAILED), (L.RELEASING, L.TIMED_OUT),
    (L.ACTING, L.INTERRUPTED), (L.HOLDING, L.INTERRUPTED), (L.RELEASING, L.INTERRUPTED),
}
SP = SpokenState
SPOKEN_ALLOWED = {(SP.RUNNING, SP.PASSED), (SP.RUNNING, SP.FAILED), (SP.RUNNING, SP.EXPIRED)}


@pytest.mark.parametrize("src,dst", list(itertools.product(StepState, StepState)))
def test_liveness_step_transition(src, dst):
    step = Step("smile", state=src)
    if (src, dst) in STEP_ALLOWED:
        step.move(dst)
        assert step.state == dst
    else:
        with pytest.raises(ValueError):
            step.move(dst)


@pytest.mark.parametrize("src,dst", list(itertools.product(SpokenState, SpokenState)))
def test_spoken_check_transition(src, dst):
    check = SpokenCheck("disability", "", "123 456", [], 0.0, state=src)
    if (src, dst) in SPOKEN_ALLOWED:
        check.move(dst, 1.0)
        assert check.state == dst and check.ended_at == 1.0
    else:
        with pytest.raises(ValueError):
            check.move(dst, 1.0)


def test_identity_tables_hold_exactly_the_expected_transitions():
    assert {(a, b) for a, bs in STEP_TRANSITIONS.items() for b in bs} == STEP_ALLOWED
    assert {(a, b) for a, bs in SPOKEN_T.items() for b in bs} == SPOKEN_ALLOWED
