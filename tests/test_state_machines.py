"""Every teller and call transition: the legal ones work, the illegal ones are refused."""

from __future__ import annotations

import itertools

import pytest

from vteller.calls.session import TRANSITIONS as CALL_T
from vteller.calls.session import Call, CallState
from vteller.routing import IllegalTransition, TellerState, TellerStatus
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
