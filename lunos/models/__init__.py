from lunos.models.account import Account, LedgerEntry
from lunos.models.api_key import ApiKey

__all__ = ["Account", "LedgerEntry", "ApiKey"]
