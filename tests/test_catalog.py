"""Catalog loading: a bad catalog stops start-up naming the file, the entry and the problem."""

import pytest

from lunos import create_app
from lunos.catalog import CatalogError, load_catalog
from lunos.config import SHIPPED_CATALOG

GOOD = """
default_model = "a/one"
[providers.a]
kind = "openai"
base_url = "http://localhost:1/v1"
[[models]]
id = "a/one"
provider = "a"
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.6
context_length = 100
max_output_tokens = 10
"""


def write(tmp_path, text):
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return str(path)


def test_shipped_catalog_loads_with_echo_default():
    catalog = load_catalog(SHIPPED_CATALOG)
    assert catalog.models[catalog.default_model].provider == "echo"
    assert catalog.find("gpt-4o-mini").id == "openai/gpt-4o-mini"


def test_cost_is_integer_micro_usd(tmp_path):
    model = load_catalog(write(tmp_path, GOOD)).models["a/one"]
    assert model.cost_micros(1_000_000, 1_000_000) == 750_000
    assert model.cost_micros(1000, 100) == 210


@pytest.mark.parametrize(
    "change, words",
    [
        (('kind = "openai"', 'kind = "carrier-pigeon"'), ["[providers.a]", "kind must be one of"]),
        (('provider = "a"', 'provider = "b"'), ["#1 (a/one)", "'b' is not defined"]),
        (("input_usd_per_mtok = 0.15", 'input_usd_per_mtok = "cheap"'), ["#1 (a/one)", "input_usd_per_mtok"]),
        (("context_length = 100\n", ""), ["missing 'context_length'"]),
        (('default_model = "a/one"', 'default_model = "a/two"'), ["default_model 'a/two'"]),
        (('base_url = "http://localhost:1/v1"', ""), ["missing 'base_url'"]),
        (("[[models]]", "[[models]"), ["invalid TOML"]),
    ],
)
def test_bad_catalog_names_file_entry_and_problem(tmp_path, change, words):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(CatalogError) as failed:
        load_catalog(path)
    message = str(failed.value)
    assert path in message
    for word in words:
        assert word in message


def test_duplicate_model_id_is_refused(tmp_path):
    models = GOOD[GOOD.index("[[models]]") :]
    with pytest.raises(CatalogError, match="defined twice"):
        load_catalog(write(tmp_path, GOOD + models))


def test_app_does_not_start_on_a_missing_catalog(tmp_path):
    with pytest.raises(CatalogError, match="file not found"):
        create_app(
            {"CATALOG": str(tmp_path / "absent.toml"), "SECRET_KEY": "x", "DATABASE_URL": f"sqlite:///{tmp_path}/db"}
        )


ENDPOINTS = """
default_model = "a/one"
[providers.a]
kind = "openai"
base_url = "http://localhost:1/v1"
[[models]]
id = "a/one"
context_length = 100
max_output_tokens = 10

[[models.endpoints]]
provider = "a"
upstream_model = "one-at-a"
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.6
weight = 3

[[models.endpoints]]
provider = "a"
upstream_model = "one-elsewhere"
input_usd_per_mtok = 0.2
output_usd_per_mtok = 0.8
context_length = 50
"""


def test_a_model_lists_its_endpoints(tmp_path):
    model = load_catalog(write(tmp_path, ENDPOINTS)).models["a/one"]
    first, second = model.endpoints
    assert (first.upstream_model, first.weight, second.context_length) == ("one-at-a", 3.0, 50)
    assert first.prices.cache_read == first.prices.input, "cache reads default to the input price"
    assert model.provider == "a" and model.cost_micros(1_000_000, 1_000_000) == 750_000


@pytest.mark.parametrize(
    "change, words",
    [
        (("weight = 3", "weight = 0"), ["#1 (a/one) endpoint #1", "'weight' must be positive"]),
        (('upstream_model = "one-elsewhere"', 'upstream_model = "one-at-a"'), ["same provider and upstream_model"]),
        (("weight = 3", 'supports = ["telepathy"]'), ["endpoint #1", "'supports' names 'telepathy'"]),
        (("weight = 3", 'data_collection = "sometimes"'), ["endpoint #1", "data_collection"]),
        (("weight = 3", "long_context = { above_tokens = 10 }"), ["endpoint #1 long_context", "input_usd_per_mtok"]),
        (("input_usd_per_mtok = 0.2", "input_usd_per_mtok = -0.2"), ["endpoint #2", "must not be negative"]),
        (
            ('provider = "a"\nupstream_model = "one-elsewhere"', 'provider = "z"\nupstream_model = "one-elsewhere"'),
            ["endpoint #2", "'z' is not defined"],
        ),
    ],
)
def test_a_bad_endpoint_names_the_file_model_endpoint_and_problem(tmp_path, change, words):
    path = write(tmp_path, ENDPOINTS.replace(*change))
    with pytest.raises(CatalogError) as failed:
        load_catalog(path)
    for word in [path, *words]:
        assert word in str(failed.value)


@pytest.mark.parametrize("setting", ['auth_header = "bad header:"', "cooldown_s = -1", 'query = "api-version"'])
def test_bad_provider_settings_stop_start_up(tmp_path, setting):
    with pytest.raises(CatalogError, match=r"\[providers.a\]"):
        load_catalog(write(tmp_path, GOOD.replace('kind = "openai"', f'kind = "openai"\n{setting}')))


def test_the_shipped_catalog_and_the_readmes_example_still_load():
    assert load_catalog(SHIPPED_CATALOG).models["lunos/echo"].endpoints[0].provider == "echo"


EMBEDDING = """
[[models]]
id = "a/embed"
type = "embedding"
provider = "a"
input_usd_per_mtok = 0.02
context_length = 8191
"""


def test_an_embedding_model_needs_no_output_price_or_length(tmp_path):
    catalog = load_catalog(write(tmp_path, GOOD + EMBEDDING))
    embed, chat = catalog.models["a/embed"], catalog.models["a/one"]
    assert (embed.type, embed.output_usd_per_mtok, embed.max_output_tokens) == ("embedding", 0, 0)
    assert chat.type == "chat"
    assert embed.cost_micros(1_000_000, 0) == 20_000


def test_the_shipped_catalog_has_embedding_models():
    catalog = load_catalog(SHIPPED_CATALOG)
    assert catalog.find("text-embedding-3-small").type == "embedding"
    assert catalog.models["lunos/echo-embedding"].provider == "echo"


@pytest.mark.parametrize(
    "text, words",
    [
        (GOOD + EMBEDDING.replace('"embedding"', '"rerank"'), ["#2 (a/embed)", "type must be one of chat, embedding"]),
        (
            GOOD.replace('kind = "openai"\nbase_url', 'kind = "anthropic"\nbase_url') + EMBEDDING,
            ["#2 (a/embed)", "kind 'anthropic'", "cannot serve embedding models", "openai"],
        ),
        (GOOD.replace("max_output_tokens = 10\n", "") + EMBEDDING, ["#1 (a/one)", "missing 'max_output_tokens'"]),
        (
            GOOD.replace('default_model = "a/one"', 'default_model = "a/embed"') + EMBEDDING,
            ["default_model 'a/embed'", "not a chat model"],
        ),
    ],
)
def test_a_model_type_its_provider_cannot_serve_stops_start_up(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(CatalogError) as failed:
        load_catalog(path)
    assert path in str(failed.value)
    for word in words:
        assert word in str(failed.value)
