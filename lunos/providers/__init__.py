"""The provider registry: one small adapter module per wire format, looked up by catalog ``kind``.

A new kind is one module: a Provider subclass with its ``kind``, its ``configure`` (the catalog
settings it reads) and the calls; then its name here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lunos.providers.anthropic import AnthropicProvider
from lunos.providers.base import Provider
from lunos.providers.echo import EchoProvider
from lunos.providers.http import UpstreamHTTP
from lunos.providers.openai import OpenAIProvider

if TYPE_CHECKING:
    from lunos.catalog import Catalog

REGISTRY: dict[str, type[Provider]] = {
    adapter.kind: adapter for adapter in (OpenAIProvider, AnthropicProvider, EchoProvider)
}


def build_providers(catalog: Catalog, http: UpstreamHTTP) -> dict[str, Provider]:
    return {name: REGISTRY[config.kind](config, http) for name, config in catalog.providers.items()}
