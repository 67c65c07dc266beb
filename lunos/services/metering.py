"""One usage event per metered request, whatever its outcome, settled against its reservation."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from flask import current_app
from sqlalchemy import Table

from lunos.errors import LunosError
from lunos.pricing import TokenUsage
from lunos.services import credits, leases, limits
from lunos.services.prepared import database_unavailable

if TYPE_CHECKING:
    from lunos.catalog import Endpoint
    from lunos.routing.router import Attempt

log = logging.getLogger(__name__)

# Final statuses of a usage event.
OK = "ok"
UPSTREAM_ERROR = "upstream_error"  # every candidate failed, or the stream broke
CLIENT_DISCONNECTED = "client_disconnected"
REFUSED = "refused"  # admission said no: plan, scope, limits, credits
ERROR = "error"  # an unexpected failure inside Lunos
INTERRUPTED = "interrupted"  # cut by the worker's shutdown
STATUSES = (OK, UPSTREAM_ERROR, CLIENT_DISCONNECTED, REFUSED, ERROR, INTERRUPTED)


@dataclass
class UsageRecord:
    """A usage event as settlement writes it: one field per column of ``usage_events``, but
    ``unbilled_micros`` and ``created_at``, which settlement fills in (``check_table`` holds the
    two together)."""

    id: str
    account_id: int
    key_id: int | None
    app_id: str
    requested_model: str | None
    model: str | None
    provider: str | None
    stream: bool
    status: str
    http_status: int
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int
    reasoning_tokens: int
    usage_estimated: bool
    cost_micros: int
    latency_ms: int
    ttft_ms: int | None
    attempts: list = field(default_factory=list)

    SETTLED_COLUMNS = ("unbilled_micros", "created_at")

    def __post_init__(self) -> None:
        # An upstream's error text may hold what PostgreSQL cannot store (NUL, a lone surrogate
        # from a JSON escape); a settlement must never fail on it.
        if self.error is not None:
            self.error = storable_text(self.error)
        self.attempts = [
            {**attempt, "error": storable_text(attempt["error"]), "code": storable_text(attempt.get("code"))}
            if attempt.get("error")  # a failed attempt: the only kind that carries upstream text
            else attempt
            for attempt in self.attempts
        ]

    def row(self) -> dict:
        """The columns' values, for the settlement's INSERT."""
        return dict(self.__dict__)


MAX_ERROR_CHARS = 2000


def storable_text(text: str | None) -> str | None:
    """``text`` without NUL or lone surrogates, at most MAX_ERROR_CHARS long."""
    if text is None:
        return None
    text = text[:MAX_ERROR_CHARS].replace("\x00", "")
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def check_table(table: Table) -> None:
    """Fail loudly when ``usage_events`` and UsageRecord disagree, so a new column cannot
    silently break settlement (run at start-up)."""
    columns = {column.key for column in table.columns}
    recorded = {f.name for f in fields(UsageRecord)} | set(UsageRecord.SETTLED_COLUMNS)
    if columns != recorded:
        raise RuntimeError(
            f"usage_events and UsageRecord differ: table only {sorted(columns - recorded)}, "
            f"record only {sorted(recorded - columns)} (lunos/services/metering.py)"
        )


def usage_tokens(tokens: TokenUsage) -> dict:
    """The usage event's token columns."""
    return {
        "prompt_tokens": tokens.prompt,
        "completion_tokens": tokens.output,
        "cached_tokens": tokens.cache_read,
        "cache_write_tokens": tokens.cache_write,
        "cache_write_1h_tokens": tokens.cache_write_1h,
        "reasoning_tokens": tokens.reasoning,
    }


class Meter:
    """Follows one request from admission to its single usage event."""

    def __init__(self, caller, request_id: str, requested_model: str, stream: bool):
        self.caller = caller
        self.request_id = request_id
        self.requested_model = requested_model
        self.stream = stream
        self.started = time.monotonic()
        self.first_output_at = None
        self.reservation_id = None
        self.leased = None  # admitted on the lease ``reservation_id`` for this worst case
        self.rate_headers = {}
        self.event: UsageRecord | None = None

    def admit(self, worst_case_micros: int) -> None:
        """Rate limits, then the reservation of ``worst_case_micros`` (on a lease of this worker's,
        or of its own); either refusal is raised."""
        self.rate_headers = limits.admit(self.caller.key_id, self.caller.quota)
        lease_id = leases.admit(self.caller.account_id, worst_case_micros, self.request_id, self.caller.key)
        if lease_id is not None:
            self.reservation_id, self.leased = lease_id, worst_case_micros
            return
        # Named before it is taken: a reservation whose COMMIT went out but whose answer was
        # lost may exist, and the settlement (which deletes it if it does) must know its id.
        self.reservation_id = self.request_id
        try:
            credits.reserve(self.caller.account_id, worst_case_micros, self.request_id, self.caller.key)
        except LunosError:  # refused: certainly not held
            self.reservation_id = None
            raise

    def output_started(self) -> None:
        if self.first_output_at is None:
            self.first_output_at = time.monotonic()

    @property
    def finished(self) -> bool:
        return self.event is not None

    def finish(
        self,
        *,
        status: str,
        http_status: int = 200,
        endpoint: Endpoint | None = None,
        usage: dict | None = None,
        usage_estimated: bool = False,
        attempts: Sequence[Attempt] = (),
        error: str | None = None,
    ) -> UsageRecord:
        """Write the usage event (kept as ``self.event``) and settle; only the first call counts.
        ``usage`` is OpenAI-shaped; its cost is the price of ``endpoint``, which answered."""
        if self.event is not None:
            return self.event
        counted = TokenUsage.from_openai(usage)
        tokens = usage_tokens(counted)
        cost = endpoint.cost_micros(counted) if endpoint else 0
        self.event = UsageRecord(
            id=self.request_id,
            account_id=self.caller.account_id,
            key_id=self.caller.key_id,
            app_id=self.caller.app_id,
            requested_model=self.requested_model,
            model=endpoint.model_id if endpoint else None,
            provider=endpoint.provider if endpoint else None,
            stream=self.stream,
            status=status,
            http_status=http_status,
            error=error,
            usage_estimated=usage_estimated,
            cost_micros=cost,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            ttft_ms=int((self.first_output_at - self.started) * 1000) if self.first_output_at else None,
            attempts=[a.as_dict() for a in attempts],
            **tokens,
        )
        try:
            credits.settle(self.reservation_id, self.caller.account_id, self.event.row(), self.leased)
        except BaseException as exc:
            # The database is away, the commit's outcome is unknown, or the settlement was cut
            # short (a shutdown kills what is still running): the settlement waits in this
            # worker's spool and is retried until it lands, once (services/pending.py); the hold
            # stays until then. A settlement that can never land is set aside there, logged.
            if not database_unavailable(exc):
                log.error("could not settle request %s (%r); kept to retry", self.request_id, exc)
            current_app.extensions["lunos-pending"].keep(
                self.reservation_id, self.caller.account_id, self.event.row(), self.leased
            )
            if not isinstance(exc, Exception):
                raise
        limits.consume_tokens(
            self.caller.key_id, self.caller.quota, tokens["prompt_tokens"] + tokens["completion_tokens"]
        )
        return self.event
