"""Embeddings: what is the endpoint's own (inputs, their token counts) on top of the
metered-request seam (services/metered.py), which admits, routes and settles.

Billed as input tokens at the answering model's input price: the upstream's
``usage.prompt_tokens``, or a local estimate (marked) when it reports none.
"""

from lunos.money import micros_to_decimal
from lunos.pricing import TokenUsage
from lunos.providers.base import EMBEDDING
from lunos.routing.candidates import ROUTING_PARAMS, candidates
from lunos.routing.preferences import Preferences
from lunos.schemas.embeddings import input_items
from lunos.services.metered import MeteredRequest
from lunos.services.metering import OK
from lunos.tokens import estimate_text

# Tokens a tokenizer may add around each input (begin and end markers), in the reservation.
PER_INPUT_OVERHEAD = 2


def input_upper_estimate(value: str | list[str] | list[int] | list[list[int]]) -> int:
    """A generous count of input tokens, for the reservation: two bytes of UTF-8 a token (most
    tokenizers average three to four), token arrays exactly, plus the markers of each input."""
    return sum(
        PER_INPUT_OVERHEAD + ((len(item.encode("utf-8")) + 1) // 2 if isinstance(item, str) else len(item))
        for item in input_items(value)
    )


def input_estimate(value: str | list[str] | list[int] | list[list[int]]) -> int:
    """The count billed when the upstream reports none: four characters a token, token arrays exactly."""
    return sum(estimate_text(item) if isinstance(item, str) else len(item) for item in input_items(value))


def worst_case_micros(endpoints: list, body: dict) -> int:
    """The most any endpoint that may be tried could cost: every input token at the dearest price."""
    tokens = input_upper_estimate(body["input"])
    return max(endpoint.prices.most_micros(tokens, 0) for endpoint in endpoints)


def reported_tokens(usage: object) -> int | None:
    """The upstream's count of input tokens; None when it gave no usable one (absent, not a
    positive integer: no input is zero tokens)."""
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0:
        return tokens
    return None


class Embedding:
    """One embeddings request, admitted when built; ``answer`` runs it."""

    def __init__(self, gateway, caller, body: dict, request_id: str):
        self.request = {key: value for key, value in body.items() if key not in ROUTING_PARAMS}
        preferences = Preferences.from_body(body.get("provider"), gateway.catalog.providers)
        self.metered = MeteredRequest(
            gateway,
            caller,
            request_id,
            candidates(gateway.catalog, body),
            model_type=EMBEDDING,
            preferences=preferences,
            worst_case_micros=lambda endpoints: worst_case_micros(endpoints, body),
        )

    @property
    def rate_headers(self) -> dict:
        return self.metered.rate_headers

    def answer(self) -> dict:
        """The embeddings ``list`` dict, its ``model`` the Lunos id, ``usage`` with its ``cost``."""
        with self.metered.guard():
            answer, endpoint = self.metered.route.call(lambda provider, e: provider.embed(e, self.request))
            tokens = reported_tokens(answer.get("usage"))
            estimated = tokens is None
            if estimated:
                tokens = input_estimate(self.request["input"])
            cost = endpoint.cost_micros(TokenUsage(uncached_input=tokens))
            usage = {
                "prompt_tokens": tokens,
                "total_tokens": tokens,
                "cost": micros_to_decimal(cost),
                **({"estimated": True} if estimated else {}),
            }
            answer.update(model=endpoint.model_id, provider=endpoint.provider, usage=usage)
            self.metered.meter.output_started()
            self.metered.finish_when_sent(status=OK, endpoint=endpoint, usage=usage, usage_estimated=estimated)
        return answer
