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
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, g

from lunos.errors import InvalidRequest, LunosError
from lunos.models.api_key import INFERENCE
from lunos.providers.base import CHAT, EMBEDDING
from lunos.routing import Route
from lunos.services.access import check_plan
from lunos.services.keys import check_key_scope, require_kind
from lunos.services.metering import ERROR, REFUSED, UPSTREAM_ERROR, Meter, UsageRecord

log = logging.getLogger(__name__)
INTERNAL_ERROR = "The server had an error while processing your request."
# What each type of model does, and where: for the message of a model named to the wrong endpoint.
OPERATIONS = {CHAT: ("chat completions", "POST /v1/chat/completions"), EMBEDDING: ("embeddings", "POST /v1/embeddings")}


def require_model_type(models: list, model_type: str) -> None:
    """Every candidate must be a model of the endpoint's type: 400 naming ``model`` otherwise."""
    for model in models:
        if model.type != model_type:
            operation, endpoint = OPERATIONS[model.type]
            raise InvalidRequest(f"The model '{model.id}' does not support {OPERATIONS[model_type][0]}: "
                                 f"it is for {operation} ({endpoint}).",
                                 param="model", code="operation_not_supported")


class MeteredRequest:
    def __init__(self, gateway, caller, request_id: str, models: list, *, worst_case_micros: int,
                 stream: bool = False, model_type: str = CHAT):
        require_model_type(models, model_type)
        self.caller = caller
        self.models = models
        self.meter = Meter(caller, request_id, models[0].id, stream)
        self.route: Route = gateway.router.route(models)
        self.handed_over = False
        g.setdefault("lunos_metered", []).append(self)
        try:
            require_kind(caller.key, INFERENCE)
            check_plan(caller.plan, models)
            check_key_scope(caller.key, models, caller.app_id)
            self.meter.admit(worst_case_micros)
        except LunosError as error:
            self.fail(error, status=REFUSED)
            raise

    @property
    def rate_headers(self) -> dict:
        return self.meter.rate_headers

    @property
    def finished(self) -> bool:
        return self.meter.finished

    def finish(self, *, status: str, model=None, usage: dict | None = None, usage_estimated: bool = False,
               http_status: int = 200, error: str | None = None) -> UsageRecord:
        return self.meter.finish(status=status, http_status=http_status, model=model, usage=usage,
                                 usage_estimated=usage_estimated, attempts=self.route.attempts, error=error)

    def fail(self, error: LunosError, status: str = UPSTREAM_ERROR, **details) -> UsageRecord:
        return self.finish(status=status, http_status=error.status, error=error.message, **details)

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


def init_app(app: Flask) -> None:
    @app.teardown_request
    def _finish_leftovers(exc):
        for metered in g.pop("lunos_metered", ()):
            if not metered.finished and not metered.handed_over:
                try:
                    metered.fail_unexpectedly(exc or RuntimeError("the request ended without finishing its meter"))
                except Exception:  # noqa: BLE001  (logged by the meter; the answer has gone already)
                    pass
