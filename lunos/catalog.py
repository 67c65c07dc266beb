"""The model catalog: providers and models read from a TOML file.

A bad catalog stops start-up with a message naming the file, the entry and the problem.
"""
import tomllib
from dataclasses import dataclass, field

PROVIDER_KINDS = ("openai", "anthropic", "echo")
MICRO_USD = 1_000_000


class CatalogError(Exception):
    pass


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    kind: str
    base_url: str = ""
    api_key_env: str = ""
    timeout_s: float = 600.0
    headers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelEntry:
    id: str
    provider: str
    upstream_model: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    context_length: int
    max_output_tokens: int
    aliases: tuple = ()

    def cost_micros(self, prompt_tokens, completion_tokens):
        """Cost in integer micro-USD; prices are USD per million tokens, so tokens x price = micro-USD."""
        return round(prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok)


@dataclass
class Catalog:
    path: str
    default_model: str
    providers: dict
    models: dict  # id -> ModelEntry, in file order
    aliases: dict

    def find(self, name):
        return self.models.get(name) or self.models.get(self.aliases.get(name))


def _require(table, key, kind, where, default=None):
    if key not in table:
        if default is not None:
            return default
        raise CatalogError(f"{where}: missing '{key}'")
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise CatalogError(f"{where}: '{key}' must be {kind.__name__}, got {value!r}")
    return value


def _provider(name, table, where):
    kind = _require(table, "kind", str, where)
    if kind not in PROVIDER_KINDS:
        raise CatalogError(f"{where}: kind must be one of {', '.join(PROVIDER_KINDS)}, got {kind!r}")
    base_url = _require(table, "base_url", str, where, default="" if kind == "echo" else None)
    timeout = _require(table, "timeout_s", float, where, default=600.0)
    if timeout <= 0:
        raise CatalogError(f"{where}: 'timeout_s' must be positive")
    headers = _require(table, "headers", dict, where, default={})
    return ProviderConfig(name=name, kind=kind, base_url=base_url.rstrip("/"),
                          api_key_env=_require(table, "api_key_env", str, where, default=""),
                          timeout_s=timeout, headers={str(k): str(v) for k, v in headers.items()})


def _model(table, index, providers, where):
    where = f"{where} [[models]] #{index + 1}"
    model_id = _require(table, "id", str, where)
    where = f"{where} ({model_id})"
    provider = _require(table, "provider", str, where)
    if provider not in providers:
        raise CatalogError(f"{where}: provider {provider!r} is not defined under [providers]")
    entry = ModelEntry(
        id=model_id, provider=provider,
        upstream_model=_require(table, "upstream_model", str, where, default=model_id),
        input_usd_per_mtok=_require(table, "input_usd_per_mtok", float, where),
        output_usd_per_mtok=_require(table, "output_usd_per_mtok", float, where),
        context_length=_require(table, "context_length", int, where),
        max_output_tokens=_require(table, "max_output_tokens", int, where),
        aliases=tuple(_require(table, "aliases", list, where, default=[])),
    )
    if entry.input_usd_per_mtok < 0 or entry.output_usd_per_mtok < 0:
        raise CatalogError(f"{where}: prices must not be negative")
    if entry.context_length <= 0 or entry.max_output_tokens <= 0:
        raise CatalogError(f"{where}: context_length and max_output_tokens must be positive")
    return entry


def read_toml(path, where, error):
    """The parsed file; a missing or malformed one raises ``error`` naming ``where``."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise error(f"{where}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{where}: invalid TOML: {exc}") from None


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
    return Catalog(path=str(path), default_model=default_model, providers=providers,
                   models=models, aliases=aliases)
