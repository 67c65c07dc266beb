"""The model catalog: providers and models read from a TOML file.

A bad catalog stops start-up with a message naming the file, the entry and the problem.
"""
from dataclasses import dataclass
from decimal import Decimal

from lunos.fields import FieldError, read_toml, require
from lunos.money import cost_micros, price, round_micros
from lunos.providers import REGISTRY
from lunos.providers.base import CHAT, EMBEDDING, MODEL_TYPES, ProviderConfig


class CatalogError(Exception):
    pass


@dataclass(frozen=True)
class ModelEntry:
    id: str
    provider: str
    upstream_model: str
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    context_length: int
    max_output_tokens: int  # 0 for an embedding model, which writes no tokens
    aliases: tuple = ()
    type: str = CHAT  # which endpoint serves it: chat (completions) or embedding

    def cost_micros(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Exact cost in integer micro-USD, rounded once: USD per million tokens is micro-USD a token."""
        return round_micros(cost_micros(prompt_tokens, self.input_usd_per_mtok)
                            + cost_micros(completion_tokens, self.output_usd_per_mtok))


@dataclass
class Catalog:
    path: str
    default_model: str
    providers: dict[str, ProviderConfig]
    models: dict  # id -> ModelEntry, in file order
    aliases: dict

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
    value = price(_require(table, key, float, where, default))
    if value < 0:
        raise CatalogError(f"{where}: prices must not be negative")
    return value


def _model(table, index, providers, where):
    where = f"{where} [[models]] #{index + 1}"
    model_id = _require(table, "id", str, where)
    where = f"{where} ({model_id})"
    provider = _require(table, "provider", str, where)
    if provider not in providers:
        raise CatalogError(f"{where}: provider {provider!r} is not defined under [providers]")
    model_type = _require(table, "type", str, where, default=CHAT)
    if model_type not in MODEL_TYPES:
        raise CatalogError(f"{where}: type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    kind = providers[provider].kind
    if model_type not in REGISTRY[kind].model_types:
        raise CatalogError(f"{where}: provider {provider!r} is of kind {kind!r}, which cannot serve "
                           f"{model_type} models (kinds that can: "
                           f"{', '.join(k for k, a in REGISTRY.items() if model_type in a.model_types)})")
    embedding = model_type == EMBEDDING  # input tokens only: no output price or length needed
    entry = ModelEntry(
        id=model_id, provider=provider,
        upstream_model=_require(table, "upstream_model", str, where, default=model_id),
        input_usd_per_mtok=_price(table, "input_usd_per_mtok", where),
        output_usd_per_mtok=_price(table, "output_usd_per_mtok", where, default=0 if embedding else None),
        context_length=_require(table, "context_length", int, where),
        max_output_tokens=_require(table, "max_output_tokens", int, where, default=0 if embedding else None),
        aliases=tuple(_require(table, "aliases", list, where, default=[])),
        type=model_type,
    )
    if entry.context_length <= 0 or entry.max_output_tokens < (0 if embedding else 1):
        raise CatalogError(f"{where}: context_length and max_output_tokens must be positive")
    return entry


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
    if models[default_model].type != CHAT:  # it answers chat completions that name no model
        raise CatalogError(f"{where}: default_model {default_model!r} is an {models[default_model].type} model, "
                           f"not a chat model")
    return Catalog(path=str(path), default_model=default_model, providers=providers,
                   models=models, aliases=aliases)
