"""Exact money. Amounts are integers of micro-USD (1 USD = 1,000,000); conversions from USD and
cents go through Decimal, never through a float, and reject what they cannot represent."""

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from lunos.errors import InvalidRequest

MICROS_PER_USD = 1_000_000
MICROS_PER_CENT = 10_000
# The largest amount one operation may move: far above any real payment, far below the
# 64-bit columns' range (9.2e18 micro-USD), so sums of many stay representable.
MAX_MICROS = 10**15  # one billion USD
MAX_EXPONENT = 18  # amounts of 10^19 USD and more are refused before any arithmetic


def decimal_usd(value, *, param=None):
    """``value`` (a number or numeric string, not a bool) as a finite Decimal of USD."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise InvalidRequest(f"not an amount of USD: {value!r}", param=param)
    try:
        amount = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise InvalidRequest(f"not an amount of USD: {value!r}", param=param) from None
    if not amount.is_finite():
        raise InvalidRequest(f"not an amount of USD: {value!r}", param=param)
    if amount.adjusted() > MAX_EXPONENT:  # arithmetic on it would overflow Decimal's context
        raise InvalidRequest(f"{str(value)[:40]!r} USD is beyond any amount Lunos handles", param=param)
    return amount


def usd_to_micros(value, *, param=None):
    """USD (a number or numeric string) to integer micro-USD, rounded half-even to the micro;
    beyond MAX_MICROS either way is a 400 naming ``param``."""
    micros = int((decimal_usd(value, param=param) * MICROS_PER_USD).to_integral_value(ROUND_HALF_EVEN))
    if abs(micros) > MAX_MICROS:
        raise InvalidRequest(
            f"{value!r} USD is beyond what one operation may move ({MAX_MICROS // MICROS_PER_USD:,} USD)", param=param
        )
    return micros


def cents_to_micros(cents):
    """Integer cents (Stripe's amounts of USD) to micro-USD."""
    return int(cents) * MICROS_PER_CENT


def micros_to_cents(micros):
    """Micro-USD to whole cents, rounded down (never more than the micros)."""
    return int(micros) // MICROS_PER_CENT


def usd_to_cents(value, *, param=None):
    """USD with at most two decimals to integer cents; more decimals are a 400."""
    amount = decimal_usd(value, param=param)
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise InvalidRequest(f"{value!r} has more than two decimals", param=param)
    return int(cents)


def micros_to_decimal(micros):
    """Micro-USD as an exact Decimal of USD."""
    return Decimal(int(micros)).scaleb(-6)


def usd(micros):
    """Micro-USD as a float of USD, for JSON answers: exact to the micro for any amount below
    2^53 micros (9 billion USD)."""
    return int(micros) / MICROS_PER_USD


def format_usd(micros, places=6):
    """Micro-USD as text with ``places`` decimals (no exponent), e.g. '0.000020'."""
    return f"{micros_to_decimal(micros):.{places}f}"


def price(value):
    """A price from a catalog or plan file (a TOML int or float) as an exact Decimal."""
    return Decimal(str(value))


def cost_micros(tokens, usd_per_mtok):
    """The exact cost of ``tokens`` at ``usd_per_mtok`` (a Decimal): USD per million tokens is
    micro-USD per token. A Decimal: round once, after adding every part of a request."""
    return Decimal(int(tokens)) * usd_per_mtok


def round_micros(amount):
    """A Decimal of micro-USD rounded half-even to a whole micro-USD."""
    return int(Decimal(amount).to_integral_value(ROUND_HALF_EVEN))
