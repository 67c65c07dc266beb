"""Failed attempts per client address, for secrets a client could otherwise guess at full speed
(the admin token, dashboard sign-in).

Counted in Flask-Limiter's storage, a fixed window per address: Redis when LUNOS_REDIS_URL is
set, so every worker and instance shares the count; memory otherwise (per process). Once an
address has failed FAILURES_PER_MINUTE times in a window, every attempt from it, the right
secret included, is refused until the window is over: a guesser learns nothing from trying on.
The address is what the caller passes (``request.remote_addr``: see the README behind a proxy).
"""

import math
import time

from limits import RateLimitItemPerMinute

from lunos.errors import RateLimited, ServiceUnavailable
from lunos.extensions import limiter
from lunos.services.limits import STORAGE_ERRORS

FAILURES_PER_MINUTE = 10
_FAILURES = RateLimitItemPerMinute(FAILURES_PER_MINUTE)


class FailureThrottle:
    def __init__(self, scope: str, what: str):
        self.scope, self.what = scope, what  # the storage key's prefix; what is refused, for the message

    def check(self, address: str) -> None:
        """Raise RateLimited (429 with Retry-After) while ``address`` has no failures left."""
        try:
            if limiter.limiter.test(_FAILURES, self.scope, address):
                return
            reset_at = limiter.limiter.get_window_stats(_FAILURES, self.scope, address).reset_time
        except STORAGE_ERRORS as exc:  # fail closed: an uncounted guess is a free guess
            raise ServiceUnavailable(f"The rate-limit storage is unavailable ({exc.__class__.__name__}).") from None
        retry_after = str(max(1, math.ceil(reset_at - time.time())))
        raise RateLimited(
            f"Too many failed {self.what} from this address: try again in {retry_after}s.",
            headers={"Retry-After": retry_after},
        )

    def failed(self, address: str) -> None:
        """Count one failed attempt of ``address``."""
        try:
            limiter.limiter.hit(_FAILURES, self.scope, address)
        except STORAGE_ERRORS as exc:
            raise ServiceUnavailable(f"The rate-limit storage is unavailable ({exc.__class__.__name__}).") from None


ADMIN_TOKEN = FailureThrottle("lunos-admin-token", "admin token attempts")
DASHBOARD_SIGN_IN = FailureThrottle("lunos-dashboard-sign-in", "sign-ins")
