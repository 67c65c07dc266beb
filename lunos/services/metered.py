"""The seam every metered endpoint goes through: admission, routing and metering, whatever the
endpoint (chat completions, embeddings) makes of the request and the answer.

A ``MeteredRequest`` is admitted when built (key kind, plan, key scope, rate limits, the
reservation of its worst case), routes through ``route``, and ends in exactly one usage event:

- the endpoint finishes it (``finish``/``fail``) when it knows the outcome;
- ``guard()`` finishes it for any exception that escapes a block (``upstream_error`` for a
  Lunos error, ``error`` for anything unexpected) and re-raises;
- a streamed answer hands it over to its response body (``hand_over``), whose close settles it;
- and the request's teardown finishes, with ``error``, any that is still open: nothing can end
  a request without its event and with its reservation held.

A model the endpoint does not serve (an embedding model named to chat) is refused before
admission, as an unknown model is: a 400 and no event.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, Response, g
from gevent import monkey

from lunos.background import background
from lunos.catalog import Endpoint
from lunos.errors import DATABASE_UNAVAILABLE, InvalidRequest, LunosError, ServiceUnavailable
from lunos.models.api_key import INFERENCE
from lunos.providers.base import CHAT, EMBEDDING
from lunos.routing import Route
from lunos.routing.preferences import Candidate, Preferences
from lunos.services.access import check_plan
from lunos.services.keys import check_key_scope, require_kind
from lunos.services.metering import ERROR, OK, REFUSED, UPSTREAM_ERROR, Meter, UsageRecord
from lunos.services.prepared import database_unavailable

log = logging.getLogger(__name__)
INTERNAL_ERROR = "The server had an error while processing your request."
# What each type of model does, and where: for the message of a model named to the wrong endpoint.
OPERATIONS = {CHAT: ("chat completions", "POST /v1/chat/completions"), EMBEDDING: ("embeddings", "POST /v1/embeddings")}


def require_model_type(models: list, model_type: str) -> None:
    """Every candidate must be a model of the endpoint's type: 400 naming ``model`` otherwise."""
    for model in models:
        if model.type != model_type:
            operation, endpoint = OPERATIONS[model.type]
            raise InvalidRequest(
                f"The model '{model.id}' does not support {OPERATIONS[model_type][0]}: "
                f"it is for {operation} ({endpoint}).",
                param="model",
                code="operation_not_supported",
            )


class MeteredRequest:
    """``candidates``: the models named (routing.preferences.Candidate, or catalog models);
    ``worst_case_micros``: the most the request may cost, or a function of the endpoints its
    route may try that says it; ``preferences``, ``features``, ``prompt_tokens`` and
    ``output_tokens`` shape the route (Router.route)."""

    def __init__(
        self,
        gateway,
        caller,
        request_id: str,
        candidates: list,
        *,
        worst_case_micros: int | Callable[[list[Endpoint]], int],
        stream: bool = False,
        preferences: Preferences | None = None,
        features: set = frozenset(),
        prompt_tokens: int = 0,
        output_tokens: int | None = None,
        model_type: str = CHAT,
    ):
        require_model_type([c.model if isinstance(c, Candidate) else c for c in candidates], model_type)
        self.caller = caller
        self.candidates = [c if isinstance(c, Candidate) else Candidate(c, frozenset(), c.id) for c in candidates]
        self.models = [c.model for c in self.candidates]
        self.meter = Meter(caller, request_id, self.candidates[0].asked or self.models[0].id, stream)
        self.handed_over = False
        g.setdefault("lunos_metered", []).append(self)
        self.route: Route | None = None
        try:
            require_kind(caller.key, INFERENCE)
            check_plan(caller.plan, self.models)
            check_key_scope(caller.key, self.models, caller.app_id)
            self.route = gateway.router.route(self.candidates, preferences, features, prompt_tokens, output_tokens)
            worst = worst_case_micros(self.route.endpoints) if callable(worst_case_micros) else worst_case_micros
            self.meter.admit(worst)
        except LunosError as error:
            self.fail(error, status=REFUSED)
            raise
        except Exception as exc:
            if database_unavailable(exc):  # the client's 503 (errors.py), recorded as such
                self.fail(ServiceUnavailable(DATABASE_UNAVAILABLE), status=REFUSED)
            raise

    @property
    def rate_headers(self) -> dict:
        return self.meter.rate_headers

    @property
    def finished(self) -> bool:
        return self.meter.finished

    def finish(
        self,
        *,
        status: str,
        endpoint: Endpoint | None = None,
        usage: dict | None = None,
        usage_estimated: bool = False,
        http_status: int = 200,
        error: str | None = None,
    ) -> UsageRecord:
        finished = self.meter.finished
        event = self.meter.finish(
            status=status,
            http_status=http_status,
            endpoint=endpoint,
            usage=usage,
            usage_estimated=usage_estimated,
            error=error,
            attempts=self.route.attempts if self.route else (),
        )
        if not finished and status == OK and endpoint is not None and not usage_estimated:
            # Speed from real traffic: a stream's time to first token, and output tokens a second
            # after it (an answer in one piece: over its whole time).
            meter = self.meter
            ttft_s = meter.first_output_at - meter.started if meter.stream and meter.first_output_at else None
            self.route.observe(endpoint, ttft_s, event.completion_tokens, event.latency_ms / 1000 - (ttft_s or 0))
        return event

    def fail(self, error: LunosError, status: str = UPSTREAM_ERROR, **details: Any) -> UsageRecord:
        # A rejection the client sees in the upstream's words is recorded with every attempt's.
        return self.finish(
            status=status, http_status=error.status, error=getattr(error, "summary", error.message), **details
        )

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Finish the request for whatever escapes the block, then let it go on."""
        try:
            yield
        except LunosError as error:
            self.fail(error)
            raise
        except BaseException as exc:
            self.fail_unexpectedly(exc)
            raise

    def fail_unexpectedly(self, exc: BaseException) -> None:
        if not self.finished:
            log.error("request %s failed unexpectedly: %r", self.meter.request_id, exc)
            self.fail(LunosError(INTERNAL_ERROR), status=ERROR)

    def hand_over(self) -> None:
        """A response body now owns the request: its close finishes it, after the view returned."""
        self.handed_over = True

    def finish_when_sent(self, **details: Any) -> None:
        """Finish with ``details`` once the answer has gone out (see ``settle_after``), so the
        client does not wait for the settlement's transaction."""
        self._deferred = details

    def settle_after(self, response: Response, app: Flask) -> None:
        """Under gevent, settle what ``finish_when_sent`` kept after ``response`` is sent, in a
        greenlet of its own: neither this answer nor the next request on the connection waits
        for it (a graceful shutdown does, see services/housekeeping.py). Elsewhere (tests, the
        CLI), at once."""
        details = getattr(self, "_deferred", None)
        if details is None or self.finished:
            return
        if not monkey.is_module_patched("threading"):
            self.finish(**details)
            return
        self.hand_over()

        def settle():
            with app.app_context():
                self.finish(**details)

        response.call_on_close(lambda: background(settle))


def init_app(app: Flask) -> None:
    @app.teardown_request
    def _finish_leftovers(exc):
        for metered in g.pop("lunos_metered", ()):
            if not metered.finished and not metered.handed_over:
                try:
                    deferred = getattr(metered, "_deferred", None)
                    if deferred is not None and exc is None:  # answered, but never handed to a response
                        metered.finish(**deferred)
                    else:
                        metered.fail_unexpectedly(exc or RuntimeError("the request ended without finishing its meter"))
                except Exception:  # noqa: BLE001  (logged by the meter; the answer has gone already)
                    pass
