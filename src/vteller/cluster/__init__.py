"""Nodes of one deployment: who is alive (leases in the shared database) and what a
survivor does for a node that died (seal its open audit sessions)."""

from vteller.cluster.lease import NodeLease
from vteller.cluster.node import NodeId
from vteller.cluster.sweeper import SessionSweeper

__all__ = ["NodeId", "NodeLease", "SessionSweeper"]
