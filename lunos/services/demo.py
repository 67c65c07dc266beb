"""First start of the development server: a demo account and key, so a new install answers at once."""

import os
from pathlib import Path

from sqlalchemy import select

from lunos.extensions import db
from lunos.models import Account
from lunos.money import usd_to_micros
from lunos.services import accounts, keys

DEMO_ACCOUNT = "demo"
DEMO_CREDITS_USD = "5"


def ensure_demo_key(instance_path: str | os.PathLike[str], server_secret: str) -> Path | None:
    """On an install with no account yet, create ``demo`` and write its key to instance/demo-key.

    Returns the key file's path, or None when the install already has accounts.
    """
    if db.session.scalar(select(Account.id).limit(1)) is not None:
        return None
    account = accounts.create_account(DEMO_ACCOUNT, usd_to_micros(DEMO_CREDITS_USD))
    _key, secret = keys.create_key(account, server_secret, name="demo")
    path = Path(instance_path) / "demo-key"
    path.write_text(secret + "\n")
    os.chmod(path, 0o600)
    return path
