"""Three loopback upstreams serving one model, and a catalog of models with several endpoints."""

import pytest

from tests.upstream import FakeUpstream, RefusingServer

CATALOG = """
default_model = "multi/llama"

[providers.alpha]
kind = "openai"
base_url = "{alpha}/v1"
timeout_s = 2

[providers.beta]
kind = "openai"
base_url = "{beta}/v1"
timeout_s = 2

[providers.down]
kind = "openai"
base_url = "{down}/v1"
timeout_s = 2
cooldown_s = 1

[providers.anth]
kind = "anthropic"
base_url = "{alpha}/v1"
api_key_env = "LUNOS_TEST_UPSTREAM_KEY"
timeout_s = 2

[providers.azure]
kind = "openai"
base_url = "{beta}/openai/deployments/gpt"
api_key_env = "LUNOS_TEST_UPSTREAM_KEY"
auth_header = "api-key"
query = {{ api-version = "2024-10-21" }}
timeout_s = 2

[[models]]
id = "multi/llama"
context_length = 100000
max_output_tokens = 1000

[[models.endpoints]]
provider = "alpha"
upstream_model = "llama-a"
input_usd_per_mtok = 1
output_usd_per_mtok = 2

[[models.endpoints]]
provider = "beta"
upstream_model = "llama-b"
input_usd_per_mtok = 0.5
output_usd_per_mtok = 1

[[models.endpoints]]
provider = "down"
upstream_model = "llama-down"
input_usd_per_mtok = 1
output_usd_per_mtok = 2
weight = 1000

[[models]]
id = "multi/priced"
context_length = 100000
max_output_tokens = 1000

[[models.endpoints]]
provider = "alpha"
upstream_model = "priced-a"
input_usd_per_mtok = 3
output_usd_per_mtok = 4
supports = ["tools"]

[[models.endpoints]]
provider = "beta"
upstream_model = "priced-b"
input_usd_per_mtok = 1
output_usd_per_mtok = 1
supports = ["tools", "seed"]
data_collection = "deny"
zdr = true

[[models]]
id = "multi/small"
context_length = 100000
max_output_tokens = 1000

[[models.endpoints]]
provider = "alpha"
upstream_model = "small-a"
input_usd_per_mtok = 1
output_usd_per_mtok = 1
context_length = 20

[[models.endpoints]]
provider = "beta"
upstream_model = "small-b"
input_usd_per_mtok = 2
output_usd_per_mtok = 2

[[models]]
id = "multi/gpt"
provider = "alpha"
upstream_model = "gpt-cached"
input_usd_per_mtok = 2.5
output_usd_per_mtok = 10
cached_input_usd_per_mtok = 1.25
cache_write_usd_per_mtok = 3
request_usd = 0.001
context_length = 128000
max_output_tokens = 1000

[[models]]
id = "multi/claude"
provider = "anth"
upstream_model = "claude-cached"
input_usd_per_mtok = 3
output_usd_per_mtok = 15
cached_input_usd_per_mtok = 0.3
cache_write_usd_per_mtok = 3.75
cache_write_1h_usd_per_mtok = 6
long_context = {{ above_tokens = 200000, input_usd_per_mtok = 6, output_usd_per_mtok = 22.5 }}
context_length = 1000000
max_output_tokens = 4000

[[models]]
id = "multi/azure"
provider = "azure"
upstream_model = "gpt-4o"
input_usd_per_mtok = 2.5
output_usd_per_mtok = 10
context_length = 128000
max_output_tokens = 1000
"""


@pytest.fixture(scope="session")
def fakes():
    servers = {"alpha": FakeUpstream(), "beta": FakeUpstream(), "down": RefusingServer()}
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture(autouse=True)
def _fresh_fakes(fakes):
    fakes["alpha"].reset()
    fakes["beta"].reset()
    fakes["down"].connections = 0


@pytest.fixture(scope="session")
def routing_catalog(fakes, tmp_path_factory):
    path = tmp_path_factory.mktemp("routing") / "catalog.toml"
    path.write_text(CATALOG.format(**{name: server.url for name, server in fakes.items()}))
    return str(path)


@pytest.fixture
def routing_app(make_app, routing_catalog):
    return make_app(CATALOG=routing_catalog)


@pytest.fixture
def routing_client(routing_app):
    return routing_app.test_client()


def sent_to(fake, upstream_model):
    return [s for s in fake.seen if s.body.get("model") == upstream_model]
