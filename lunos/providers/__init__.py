"""The provider registry: one small adapter module per wire format, looked up by catalog ``kind``."""
from lunos.providers.anthropic import AnthropicProvider
from lunos.providers.echo import EchoProvider
from lunos.providers.openai import OpenAIProvider

REGISTRY = {adapter.kind: adapter for adapter in (OpenAIProvider, AnthropicProvider, EchoProvider)}


def build_providers(catalog, http):
    return {name: REGISTRY[config.kind](config, http) for name, config in catalog.providers.items()}
