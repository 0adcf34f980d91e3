"""Queue and teller selection (ACD): priority classes with aging, skills, languages,
elderly green channel, random assignment where required, service statistics."""

from vteller.routing.model import PriorityClass, Request, TellerProfile, classify, segments_for
from vteller.routing.policy import FIFO, RoutingPolicy
from vteller.routing.router import Router
from vteller.routing.stats import ServiceStats
from vteller.routing.tellers import IllegalTransition, TellerState, TellerStatus

__all__ = ["FIFO", "IllegalTransition", "PriorityClass", "Request", "Router", "RoutingPolicy",
           "ServiceStats", "TellerProfile", "TellerState", "TellerStatus", "classify",
           "segments_for"]
