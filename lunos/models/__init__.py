from lunos.models.account import Account, LedgerEntry
from lunos.models.api_key import ApiKey
from lunos.models.billing import BillingAttention, StripeCredit, StripeEvent, StripeRefund
from lunos.models.dashboard import DashboardSession
from lunos.models.usage import App, Reservation, UsageEvent, UsageHourly

__all__ = [
    "Account",
    "LedgerEntry",
    "ApiKey",
    "BillingAttention",
    "StripeCredit",
    "StripeEvent",
    "StripeRefund",
    "Reservation",
    "UsageEvent",
    "App",
    "UsageHourly",
    "DashboardSession",
]
