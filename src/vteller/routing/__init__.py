"""Queue and teller selection. v1: first-come-first-served behind the Router seam."""

from vteller.routing.fifo import FifoRouter
from vteller.routing.tellers import IllegalTransition, TellerState, TellerStatus

__all__ = ["FifoRouter", "IllegalTransition", "TellerState", "TellerStatus"]
