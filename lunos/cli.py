"""Operator commands: ``flask --app app lunos ...``."""
import click
from flask import current_app
from flask.cli import AppGroup

from lunos.errors import LunosError
from lunos.services import accounts, keys

lunos_cli = AppGroup("lunos", help="Manage Lunos accounts and keys.")


def _fail(error):
    raise click.ClickException(error.message)


@lunos_cli.command("create-account")
@click.argument("name")
@click.option("--credits", "credits_usd", default="0", show_default=True, help="Opening credits in USD.")
def create_account(name, credits_usd):
    """Create account NAME, optionally with opening credits."""
    try:
        micros = accounts.usd_to_micros(credits_usd)
        if micros < 0:
            raise click.BadParameter("must not be negative", param_hint="--credits")
        account = accounts.create_account(name, micros)
    except LunosError as error:
        _fail(error)
    click.echo(f"created account {account.name!r} (id {account.id}) with "
               f"{account.balance_micros / 1_000_000:.6f} USD of credits")


@lunos_cli.command("create-key")
@click.option("--account", "account_name", required=True, help="Name of the account the key belongs to.")
@click.option("--name", "label", default="default", show_default=True, help="A label for the key.")
def create_key(account_name, label):
    """Create an API key; the secret is printed alone on the last line, once."""
    try:
        account = accounts.get_account(account_name)
    except LunosError as error:
        _fail(error)
    key, secret = keys.create_key(account, current_app.config["SECRET_KEY"], name=label)
    click.echo(f"created key {key.name!r} ({key.prefix}...) for account {account.name!r}; "
               "store it now, it is not shown again:")
    click.echo(secret)


def init_app(app):
    app.cli.add_command(lunos_cli)
