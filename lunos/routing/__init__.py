"""Routing: which model and endpoint serve a request, retries, fallbacks."""

from lunos.routing.router import Attempt, RetryPolicy, Route, Router

__all__ = ["Attempt", "RetryPolicy", "Route", "Router"]
