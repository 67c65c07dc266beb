"""Token buckets and exact prices, by hand."""

from decimal import Decimal

from lunos.pricing import Prices, Tier, TokenUsage

D = Decimal


def test_openai_usage_round_trips_through_the_buckets():
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 50,
        "total_tokens": 1050,
        "prompt_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 300, "cache_write_1h_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 20},
    }
    tokens = TokenUsage.from_openai(usage)
    assert tokens == TokenUsage(
        uncached_input=100, cache_read=600, cache_write=200, cache_write_1h=100, output=50, reasoning=20
    )
    assert TokenUsage.from_openai(tokens.as_openai()) == tokens


def test_buckets_that_claim_more_than_the_prompt_are_cut_to_it():
    tokens = TokenUsage.from_openai({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 50}})
    assert (tokens.cache_read, tokens.uncached_input) == (10, 0)
    assert TokenUsage.from_openai({"prompt_tokens": "many", "completion_tokens": -3}) == TokenUsage()


def test_costs_are_exact_micro_dollars_rounded_once():
    prices = Prices(
        input=D("0.15"), output=D("0.6"), cache_read=D("0.075"), cache_write=D("0.15"), cache_write_1h=D("0.15")
    )
    # 3 x 0.15 + 1 x 0.075 + 1 x 0.6 = 1.125 micro-USD: one rounding (half-even) of the sum.
    assert prices.cost_micros(TokenUsage(uncached_input=3, cache_read=1, output=1)) == 1
    assert prices.cost_micros(TokenUsage(uncached_input=1_000_000, output=1_000_000)) == 750_000


def test_the_long_context_tier_and_the_dearest_bucket_bound_a_reservation():
    prices = Prices(
        input=D(3),
        output=D(15),
        cache_read=D("0.3"),
        cache_write=D("3.75"),
        cache_write_1h=D(6),
        request=D("0.01"),
        long_context=Tier(above_tokens=1000, input=D(6), output=D("22.5")),
    )
    assert prices.most_micros(100, 10) == 100 * 6 + 10 * 15 + 10_000  # 1-hour writes are the dearest input
    assert prices.most_micros(2000, 10) == 2000 * 6 + 225 + 10_000  # the tier's input is as dear
    assert prices.cost_micros(TokenUsage(uncached_input=2000, output=10)) == 2000 * 6 + 225 + 10_000
