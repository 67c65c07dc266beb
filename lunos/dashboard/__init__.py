"""The per-account web dashboard under /dashboard: sign in with a management key."""

from lunos.dashboard.views import bp

__all__ = ["bp"]
