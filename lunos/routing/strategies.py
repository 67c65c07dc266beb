"""The order in which a model's endpoints are tried.

By default, at random by ``weight`` (each endpoint's share of traffic); with ``sort``, by price
(cheapest first), throughput (fastest output first) or latency (quickest first token first),
an endpoint without figures yet after those with figures; ``provider.order`` puts its
providers first, in its order. Health is not a strategy: the router sets open breakers aside.
"""

import random

from lunos.catalog import Endpoint


def weighted_shuffle(endpoints: list[Endpoint], rng: random.Random) -> list[Endpoint]:
    """All of ``endpoints``, the first drawn by weight, then the next among the rest, and so on."""
    # Efraimidis-Spirakis: sort by u^(1/w), one pass and no repeated draws.
    return sorted(endpoints, key=lambda e: rng.random() ** (1.0 / e.weight), reverse=True)


def by_price(endpoints: list[Endpoint]) -> list[Endpoint]:
    return sorted(endpoints, key=lambda e: (e.prices.input + e.prices.output, e.prices.input))


def by_figure(endpoints: list[Endpoint], figure, best_high: bool) -> list[Endpoint]:
    """Sorted by ``figure(endpoint)`` (None: no figures yet, last); stable otherwise."""
    known = [e for e in endpoints if figure(e) is not None]
    unknown = [e for e in endpoints if figure(e) is None]
    return sorted(known, key=figure, reverse=best_high) + unknown


def order(endpoints: list[Endpoint], sort: str | None, first: tuple, health, rng: random.Random) -> list[Endpoint]:
    if sort == "price":
        ranked = by_price(endpoints)
    elif sort == "throughput":
        ranked = by_figure(weighted_shuffle(endpoints, rng), lambda e: health.health(e.key).tps, best_high=True)
    elif sort == "latency":
        ranked = by_figure(weighted_shuffle(endpoints, rng), lambda e: health.health(e.key).ttft_ms, best_high=False)
    else:
        ranked = weighted_shuffle(endpoints, rng)
    if not first:
        return ranked
    named = [e for provider in first for e in ranked if e.provider == provider]
    return named + [e for e in ranked if e not in named]
