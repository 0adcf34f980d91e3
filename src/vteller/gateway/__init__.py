"""WebSocket + REST edge: authenticate, validate, dispatch, map errors. No business logic."""

from vteller.gateway.http import setup_routes

__all__ = ["setup_routes"]
