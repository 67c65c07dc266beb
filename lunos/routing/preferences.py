"""What a request asks of routing: model variants and the ``provider`` preferences object, in
the shape OpenRouter-style clients send, and the endpoints of a model they leave.

``provider`` (every field optional): ``order`` (provider names tried first, in that order),
``only`` (an allow-list), ``ignore`` (a deny-list), ``allow_fallbacks`` (default true; false:
only the providers in ``order``/``only``), ``sort`` (``price``, ``throughput``, ``latency``),
``max_price`` (``{"prompt", "completion"}`` in USD per million tokens), ``require_parameters``
(only endpoints whose ``supports`` covers every optional feature the request uses),
``data_collection`` (``deny``: only endpoints that collect nothing) and ``zdr`` (true: only
zero-data-retention endpoints).

Variants, on any model id: ``:nitro`` (sort by throughput), ``:floor`` (sort by price) and
``:thinking`` (extended reasoning, see the adapters' ``with_reasoning``).
"""

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from lunos.catalog import Catalog, Endpoint, ModelEntry
from lunos.errors import InvalidRequest

VARIANTS = ("nitro", "floor", "thinking")
SORTS = ("price", "throughput", "latency")
_FIELDS = (
    "order",
    "only",
    "ignore",
    "allow_fallbacks",
    "sort",
    "max_price",
    "require_parameters",
    "data_collection",
    "zdr",
)


@dataclass(frozen=True)
class Candidate:
    """A model as a request named it: the catalog's model, and the variants asked for."""

    model: ModelEntry
    variants: frozenset = frozenset()
    asked: str = ""

    @property
    def id(self) -> str:
        return self.model.id

    def sort(self, preferences: "Preferences") -> str | None:
        if preferences.sort:
            return preferences.sort
        if "nitro" in self.variants:
            return "throughput"
        if "floor" in self.variants:
            return "price"
        return None


def resolve(catalog: Catalog, name: str) -> Candidate | None:
    """``name`` as a catalog model (or alias), with any variant suffixes; None when unknown.
    A model id that itself contains ':' (``llama3:8b``) is found before any variant."""
    model = catalog.find(name)
    if model is not None:
        return Candidate(model, frozenset(), name)
    base, variants = name, set()
    while ":" in base:
        head, _, tail = base.rpartition(":")
        if tail not in VARIANTS:
            return None
        base = head
        variants.add(tail)
        model = catalog.find(base)
        if model is not None:
            return Candidate(model, frozenset(variants), name)
    return None


@dataclass(frozen=True)
class Preferences:
    order: tuple = ()
    only: tuple | None = None
    ignore: tuple = ()
    allow_fallbacks: bool = True
    sort: str | None = None
    max_prompt: Decimal | None = None
    max_completion: Decimal | None = None
    require_parameters: bool = False
    data_collection: str = "allow"
    zdr: bool = False

    @classmethod
    def from_body(cls, value, providers) -> "Preferences":
        """The request's ``provider`` object, checked: a bad value is a 400 naming its param."""
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise InvalidRequest("'provider' must be an object", param="provider")
        for name in value:
            if name not in _FIELDS:
                raise InvalidRequest(
                    f"Unknown provider preference '{name}'; known: {', '.join(_FIELDS)}", param=f"provider.{name}"
                )
        order = _names(value, "order", providers)
        only = _names(value, "only", providers) if value.get("only") is not None else None
        sort = value.get("sort")
        if sort is not None and sort not in SORTS:
            raise InvalidRequest(f"'provider.sort' must be one of {', '.join(SORTS)}", param="provider.sort")
        data_collection = value.get("data_collection", "allow")
        if data_collection not in ("allow", "deny"):
            raise InvalidRequest(
                "'provider.data_collection' must be 'allow' or 'deny'", param="provider.data_collection"
            )
        max_price = value.get("max_price") or {}
        if not isinstance(max_price, dict):
            raise InvalidRequest("'provider.max_price' must be an object", param="provider.max_price")
        for name in max_price:
            if name not in ("prompt", "completion"):
                raise InvalidRequest(
                    "'provider.max_price' takes 'prompt' and 'completion'", param=f"provider.max_price.{name}"
                )
        return cls(
            order=order,
            only=only,
            ignore=_names(value, "ignore", providers),
            allow_fallbacks=_flag(value, "allow_fallbacks", True),
            sort=sort,
            max_prompt=_price(max_price, "prompt"),
            max_completion=_price(max_price, "completion"),
            require_parameters=_flag(value, "require_parameters", False),
            data_collection=data_collection,
            zdr=_flag(value, "zdr", False),
        )


def _names(value, field, providers):
    names = value.get(field)
    if names is None:
        return ()
    if not isinstance(names, list):
        raise InvalidRequest(f"'provider.{field}' must be a list of provider names", param=f"provider.{field}")
    for index, name in enumerate(names):
        if not isinstance(name, str) or name not in providers:
            raise InvalidRequest(
                f"'provider.{field}[{index}]' is not a provider of this gateway ({', '.join(providers)})",
                param=f"provider.{field}[{index}]",
            )
    return tuple(names)


def _flag(value, field, default):
    flag = value.get(field, default)
    if not isinstance(flag, bool):
        raise InvalidRequest(f"'provider.{field}' must be true or false", param=f"provider.{field}")
    return flag


def _price(max_price, field):
    if max_price.get(field) is None:
        return None
    raw = max_price[field]
    try:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise InvalidOperation
        amount = Decimal(str(raw))
    except InvalidOperation:
        amount = Decimal(-1)
    if not amount.is_finite() or amount < 0:
        raise InvalidRequest(
            f"'provider.max_price.{field}' must be a non-negative number (USD per million tokens)",
            param=f"provider.max_price.{field}",
        )
    return amount


# Optional features a request uses, as catalog ``supports`` names them.
def features_used(body: dict) -> set:
    used = set()
    if body.get("tools") or body.get("tool_choice") or body.get("functions"):
        used.add("tools")
    if body.get("response_format"):
        used.add("response_format")
    if body.get("logprobs") or body.get("top_logprobs"):
        used.add("logprobs")
    if body.get("seed") is not None:
        used.add("seed")
    return used


def filter_endpoints(
    candidate: Candidate, preferences: Preferences, features: set, prompt_tokens: int, output_tokens: int | None
) -> tuple[list[Endpoint], list[tuple[Endpoint, str]]]:
    """The model's endpoints the request allows, and those it removes with the reason why."""
    allowed, removed = [], []
    model = candidate.model
    for endpoint in model.endpoints:
        reason = _removal(endpoint, model, preferences, features, prompt_tokens, output_tokens)
        (removed.append((endpoint, reason)) if reason else allowed.append(endpoint))
    return allowed, removed


def _removal(endpoint, model, preferences, features, prompt_tokens, output_tokens):
    provider = endpoint.provider
    if preferences.only is not None and provider not in preferences.only:
        return "not in provider.only"
    if provider in preferences.ignore:
        return "in provider.ignore"
    if (
        not preferences.allow_fallbacks
        and preferences.order
        and preferences.only is None
        and provider not in preferences.order
    ):
        return "not in provider.order, and provider.allow_fallbacks is false"
    prices = endpoint.prices
    if preferences.max_prompt is not None and prices.input > preferences.max_prompt:
        return f"prompt price {_usd(prices.input)} above provider.max_price.prompt"
    if preferences.max_completion is not None and prices.output > preferences.max_completion:
        return f"completion price {_usd(prices.output)} above provider.max_price.completion"
    if preferences.require_parameters and not features <= endpoint.supports:
        return f"does not support {', '.join(sorted(features - endpoint.supports))} (provider.require_parameters)"
    if preferences.data_collection == "deny" and endpoint.data_collection != "deny":
        return "may collect data (provider.data_collection is deny)"
    if preferences.zdr and not endpoint.zdr:
        return "not zero data retention (provider.zdr)"
    if endpoint.context_length < model.context_length and prompt_tokens > endpoint.context_length:
        return f"context of {endpoint.context_length} tokens too small"
    if (
        endpoint.max_output_tokens < model.max_output_tokens
        and output_tokens
        and output_tokens > endpoint.max_output_tokens
    ):
        return f"at most {endpoint.max_output_tokens} output tokens"
    return None


def _usd(amount: Decimal) -> str:
    return format(amount.normalize(), "f")
