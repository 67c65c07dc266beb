"""The model catalog: providers and models read from a TOML file.

A model is served by one or more endpoints: a provider, its upstream model name and its prices.
A model names one ``provider`` (one endpoint, its fields at the model's level) or lists
``[[models.endpoints]]``. A bad catalog stops start-up with a message naming the file, the
model, the endpoint and the problem.
"""

from dataclasses import dataclass, field
from decimal import Decimal

from lunos.fields import FieldError, read_toml, require
from lunos.money import price
from lunos.pricing import Prices, Tier, TokenUsage
from lunos.providers import REGISTRY
from lunos.providers.base import CHAT, EMBEDDING, MODEL_TYPES, ProviderConfig

# Optional request features an endpoint may declare it honours (``supports``), for the
# request's ``provider.require_parameters``.
FEATURES = ("tools", "response_format", "logprobs", "seed")
DATA_COLLECTION = ("allow", "deny")


class CatalogError(Exception):
    pass


@dataclass(frozen=True)
class Endpoint:
    """One place a model is served: a provider, its name for the model there, its prices."""

    model_id: str
    provider: str
    upstream_model: str
    prices: Prices
    context_length: int
    max_output_tokens: int
    weight: float = 1.0
    supports: frozenset = frozenset(FEATURES)
    data_collection: str = "allow"
    zdr: bool = False

    @property
    def key(self) -> str:
        """What health and statistics are kept under: the same upstream model at the same
        provider is one endpoint, whichever catalog models share it."""
        return f"{self.provider}/{self.upstream_model}"

    def cost_micros(self, usage: TokenUsage) -> int:
        return self.prices.cost_micros(usage)


@dataclass(frozen=True)
class ModelEntry:
    id: str
    context_length: int
    max_output_tokens: int  # 0 for an embedding model, which writes no tokens
    endpoints: tuple[Endpoint, ...]
    aliases: tuple = ()
    type: str = CHAT  # which endpoint serves it: chat (completions) or embedding

    # The first endpoint's, for what shows one provider and price per model (/v1/models).
    @property
    def provider(self) -> str:
        return self.endpoints[0].provider

    @property
    def upstream_model(self) -> str:
        return self.endpoints[0].upstream_model

    @property
    def input_usd_per_mtok(self) -> Decimal:
        return self.endpoints[0].prices.input

    @property
    def output_usd_per_mtok(self) -> Decimal:
        return self.endpoints[0].prices.output

    def cost_micros(self, prompt_tokens: int, completion_tokens: int) -> int:
        """The first endpoint's exact cost of uncached prompt and output tokens."""
        return self.endpoints[0].cost_micros(TokenUsage(uncached_input=prompt_tokens, output=completion_tokens))


@dataclass
class Catalog:
    path: str
    default_model: str
    providers: dict[str, ProviderConfig]
    models: dict  # id -> ModelEntry, in file order
    aliases: dict
    endpoints: dict = field(default_factory=dict)  # Endpoint.key -> Endpoint (the first of a key)

    def find(self, name: str) -> ModelEntry | None:
        return self.models.get(name) or self.models.get(self.aliases.get(name))


def _require(table, key, kind, where, default=None):
    try:
        return require(table, key, kind, **({} if default is None else {"default": default}))
    except FieldError as exc:
        raise CatalogError(f"{where}: {exc}") from None


def _provider(name, table, where):
    kind = _require(table, "kind", str, where)
    adapter = REGISTRY.get(kind)
    if adapter is None:
        raise CatalogError(f"{where}: kind must be one of {', '.join(REGISTRY)}, got {kind!r}")
    try:
        return adapter.configure(name, table)
    except FieldError as exc:
        raise CatalogError(f"{where}: {exc}") from None


def _price(table, key, where, default=None):
    value = _require(table, key, float, where, default=default)
    value = price(value)
    if value < 0:
        raise CatalogError(f"{where}: '{key}' must not be negative")
    return value


def _positive(table, key, where, default=None):
    value = _require(table, key, int, where, default=default)
    if value <= 0:
        raise CatalogError(f"{where}: '{key}' must be positive")
    return value


def _prices(table, where, output_default=None):
    input_price = _price(table, "input_usd_per_mtok", where)
    cache_write = _price(table, "cache_write_usd_per_mtok", where, default=float(input_price))
    tier = None
    if "long_context" in table:
        long_context = _require(table, "long_context", dict, where)
        at = f"{where} long_context"
        tier = Tier(
            above_tokens=_positive(long_context, "above_tokens", at),
            input=_price(long_context, "input_usd_per_mtok", at),
            output=_price(long_context, "output_usd_per_mtok", at),
        )
    return Prices(
        input=input_price,
        output=_price(table, "output_usd_per_mtok", where, default=output_default),
        cache_read=_price(table, "cached_input_usd_per_mtok", where, default=float(input_price)),
        cache_write=cache_write,
        cache_write_1h=_price(table, "cache_write_1h_usd_per_mtok", where, default=float(cache_write)),
        request=_price(table, "request_usd", where, default=0.0),
        long_context=tier,
    )


def _endpoint(table, model_id, providers, where, context_length, max_output_tokens, default_upstream):
    provider = _require(table, "provider", str, where)
    if provider not in providers:
        raise CatalogError(f"{where}: provider {provider!r} is not defined under [providers]")
    weight = _require(table, "weight", float, where, default=1.0)
    if weight <= 0:
        raise CatalogError(f"{where}: 'weight' must be positive")
    adapter = REGISTRY[providers[provider].kind]
    supports = _require(table, "supports", list, where, default=sorted(adapter.supports))
    unknown = [s for s in supports if s not in FEATURES]
    if unknown:
        raise CatalogError(f"{where}: 'supports' names {unknown[0]!r}; known: {', '.join(FEATURES)}")
    data_collection = _require(table, "data_collection", str, where, default="allow")
    if data_collection not in DATA_COLLECTION:
        raise CatalogError(f"{where}: 'data_collection' must be 'allow' or 'deny', got {data_collection!r}")
    return Endpoint(
        model_id=model_id,
        provider=provider,
        upstream_model=_require(table, "upstream_model", str, where, default=default_upstream),
        prices=_prices(table, where, output_default=None if max_output_tokens else 0.0),
        context_length=min(_positive(table, "context_length", where, default=context_length), context_length),
        max_output_tokens=min(
            _positive(table, "max_output_tokens", where, default=max_output_tokens), max_output_tokens
        )
        if max_output_tokens
        else 0,  # an embedding model's: none
        weight=weight,
        supports=frozenset(supports),
        data_collection=data_collection,
        zdr=_require(table, "zdr", bool, where, default=False),
    )


def _model(table, index, providers, where):
    where = f"{where} [[models]] #{index + 1}"
    model_id = _require(table, "id", str, where)
    where = f"{where} ({model_id})"
    model_type = _require(table, "type", str, where, default=CHAT)
    if model_type not in MODEL_TYPES:
        raise CatalogError(f"{where}: type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    embedding = model_type == EMBEDDING  # input tokens only: no output price or length needed
    context_length = _positive(table, "context_length", where)
    max_output_tokens = (
        0 if embedding and "max_output_tokens" not in table else _positive(table, "max_output_tokens", where)
    )
    listed = table.get("endpoints")
    if listed is None:  # one provider, named at the model's level
        endpoints = (_endpoint(table, model_id, providers, where, context_length, max_output_tokens, model_id),)
    else:
        if "provider" in table:
            raise CatalogError(f"{where}: name one 'provider' or list 'endpoints', not both")
        if not isinstance(listed, list) or not listed or not all(isinstance(e, dict) for e in listed):
            raise CatalogError(f"{where}: 'endpoints' must be a list of [[models.endpoints]] tables")
        endpoints = tuple(
            _endpoint(e, model_id, providers, f"{where} endpoint #{n + 1}", context_length, max_output_tokens, model_id)
            for n, e in enumerate(listed)
        )
        keys = [e.key for e in endpoints]
        if len(keys) != len(set(keys)):
            raise CatalogError(f"{where}: two endpoints name the same provider and upstream_model")
    for endpoint in endpoints:
        kind = providers[endpoint.provider].kind
        if model_type not in REGISTRY[kind].model_types:
            raise CatalogError(
                f"{where}: provider {endpoint.provider!r} is of kind {kind!r}, which cannot serve "
                f"{model_type} models (kinds that can: "
                f"{', '.join(k for k, a in REGISTRY.items() if model_type in a.model_types)})"
            )
    return ModelEntry(
        id=model_id,
        context_length=context_length,
        max_output_tokens=max_output_tokens,
        endpoints=endpoints,
        aliases=tuple(_require(table, "aliases", list, where, default=[])),
        type=model_type,
    )


def load_catalog(path):
    where = f"catalog {path}"
    data = read_toml(path, where, CatalogError)

    providers = {}
    for name, table in _require(data, "providers", dict, where).items():
        providers[name] = _provider(name, table, f"{where} [providers.{name}]")

    models, aliases = {}, {}
    for index, table in enumerate(_require(data, "models", list, where)):
        entry = _model(table, index, providers, where)
        if entry.id in models:
            raise CatalogError(f"{where}: model id {entry.id!r} is defined twice")
        models[entry.id] = entry
        for alias in entry.aliases:
            if alias in aliases or alias in models:
                raise CatalogError(f"{where}: alias {alias!r} of {entry.id!r} is already taken")
            aliases[alias] = entry.id
    if not models:
        raise CatalogError(f"{where}: no [[models]] defined")
    clash = set(aliases) & set(models)
    if clash:
        raise CatalogError(f"{where}: alias {sorted(clash)[0]!r} is also a model id")

    default_model = _require(data, "default_model", str, where)
    if default_model not in models:
        raise CatalogError(f"{where}: default_model {default_model!r} is not a model in the catalog")
    endpoints = {}
    for model in models.values():
        for endpoint in model.endpoints:
            endpoints.setdefault(endpoint.key, endpoint)
    if models[default_model].type != CHAT:  # it answers chat completions that name no model
        raise CatalogError(
            f"{where}: default_model {default_model!r} is an {models[default_model].type} model, not a chat model"
        )
    return Catalog(
        path=str(path),
        default_model=default_model,
        providers=providers,
        models=models,
        aliases=aliases,
        endpoints=endpoints,
    )
