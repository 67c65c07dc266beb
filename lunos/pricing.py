"""Exact prices: an endpoint's prices per bucket of tokens, and the usage of one answer in buckets.

Upstreams count differently. OpenAI-style usage counts cache reads (``cached_tokens``) inside
``prompt_tokens``; Anthropic's ``input_tokens``, ``cache_read_input_tokens`` and
``cache_creation_input_tokens`` are disjoint and add up. ``TokenUsage`` holds the disjoint
buckets either way, and its ``as_openai`` gives the answer's usage in OpenAI's shape, with
``prompt_tokens_details.cached_tokens`` and ``cache_write_tokens``. Reasoning tokens are output.
"""

from dataclasses import dataclass
from decimal import Decimal

from lunos.money import cost_micros, round_micros

ZERO = Decimal(0)


@dataclass(frozen=True)
class TokenUsage:
    uncached_input: int = 0
    cache_read: int = 0
    cache_write: int = 0  # 5-minute cache writes (or writes of unreported duration)
    cache_write_1h: int = 0
    output: int = 0  # reasoning included
    reasoning: int = 0  # of the output, when reported

    @property
    def prompt(self) -> int:
        return self.uncached_input + self.cache_read + self.cache_write + self.cache_write_1h

    @classmethod
    def from_openai(cls, usage: dict | None) -> "TokenUsage":
        """From OpenAI-shaped usage (what adapters hand back): ``prompt_tokens`` includes the
        cached and cache-write tokens of ``prompt_tokens_details``; ``cache_write_1h_tokens``,
        where an adapter reports it, is the part of ``cache_write_tokens`` written for an hour."""
        usage = usage or {}
        details = usage.get("prompt_tokens_details") or {}
        prompt = _count(usage.get("prompt_tokens"))
        read = min(_count(details.get("cached_tokens")), prompt)
        written = min(_count(details.get("cache_write_tokens")), prompt - read)
        write_1h = min(_count(details.get("cache_write_1h_tokens")), written)
        write = written - write_1h
        output = _count(usage.get("completion_tokens"))
        reasoning = min(_count((usage.get("completion_tokens_details") or {}).get("reasoning_tokens")), output)
        return cls(prompt - read - write - write_1h, read, write, write_1h, output, reasoning)

    def as_openai(self) -> dict:
        usage = {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.output,
            "total_tokens": self.prompt + self.output,
        }
        if self.cache_read or self.cache_write or self.cache_write_1h:
            usage["prompt_tokens_details"] = {
                "cached_tokens": self.cache_read,
                "cache_write_tokens": self.cache_write + self.cache_write_1h,
            }
            if self.cache_write_1h:
                usage["prompt_tokens_details"]["cache_write_1h_tokens"] = self.cache_write_1h
        if self.reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning}
        return usage


def _count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@dataclass(frozen=True)
class Tier:
    """Prices above ``above_tokens`` of prompt (a long-context tier)."""

    above_tokens: int
    input: Decimal
    output: Decimal


@dataclass(frozen=True)
class Prices:
    """USD per million tokens (which is micro-USD per token), per bucket; ``request`` in USD."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal
    request: Decimal = ZERO
    long_context: Tier | None = None

    def _tiered(self, prompt_tokens: int) -> tuple[Decimal, Decimal]:
        tier = self.long_context
        if tier is not None and prompt_tokens > tier.above_tokens:
            return tier.input, tier.output
        return self.input, self.output

    def cost_micros(self, usage: TokenUsage) -> int:
        """The exact cost of ``usage``, in integer micro-USD, rounded once."""
        input_price, output_price = self._tiered(usage.prompt)
        total = (
            cost_micros(usage.uncached_input, input_price)
            + cost_micros(usage.cache_read, self.cache_read)
            + cost_micros(usage.cache_write, self.cache_write)
            + cost_micros(usage.cache_write_1h, self.cache_write_1h)
            + cost_micros(usage.output, output_price)
            + self.request * 1_000_000
        )
        return round_micros(total)

    def most_micros(self, prompt_tokens: int, output_tokens: int) -> int:
        """The most ``prompt_tokens`` and ``output_tokens`` could cost, whatever their buckets:
        for reservations."""
        input_price, output_price = self._tiered(prompt_tokens)
        dearest_input = max(input_price, self.cache_read, self.cache_write, self.cache_write_1h)
        return round_micros(
            cost_micros(prompt_tokens, dearest_input)
            + cost_micros(output_tokens, output_price)
            + self.request * 1_000_000
        )
