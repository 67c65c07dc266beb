"""Operator commands: ``flask --app app lunos ...``."""

import uuid
from datetime import timedelta

import click
from flask import current_app
from flask.cli import AppGroup

from lunos.errors import LunosError
from lunos.extensions import db
from lunos.models.api_key import INFERENCE, MANAGEMENT
from lunos.money import format_usd, usd_to_micros
from lunos.services import accounts, credits, keys

lunos_cli = AppGroup("lunos", help="Manage Lunos accounts and keys.")


def _fail(error):
    raise click.ClickException(error.message)


@lunos_cli.command("create-account")
@click.argument("name")
@click.option("--credits", "credits_usd", default="0", show_default=True, help="Opening credits in USD.")
def create_account(name, credits_usd):
    """Create account NAME, optionally with opening credits."""
    try:
        micros = usd_to_micros(credits_usd)
        if micros < 0:
            raise click.BadParameter("must not be negative", param_hint="--credits")
        account = accounts.create_account(name, micros)
    except LunosError as error:
        _fail(error)
    click.echo(
        f"created account {account.name!r} (id {account.id}) with {format_usd(account.balance_micros)} USD of credits"
    )


@lunos_cli.command("create-key")
@click.option("--account", "account_name", required=True, help="Name of the account the key belongs to.")
@click.option("--name", "label", default="default", show_default=True, help="A label for the key.")
@click.option(
    "--management", is_flag=True, help="A management key: manages keys, billing, apps and usage; calls no model."
)
def create_key(account_name, label, management):
    """Create an API key; the secret is printed alone on the last line, once."""
    try:
        account = accounts.get_account(account_name)
    except LunosError as error:
        _fail(error)
    key, secret = keys.create_key(
        account, current_app.config["SECRET_KEY"], name=label, kind=MANAGEMENT if management else INFERENCE
    )
    click.echo(
        f"created {key.kind} key {key.name!r} ({key.prefix}...) for account {account.name!r}; "
        "store it now, it is not shown again:"
    )
    click.echo(secret)


@lunos_cli.command("grant-credits")
@click.option("--account", "account_name", required=True, help="Name of the account.")
@click.option("--usd", "amount_usd", required=True, help="USD to add; negative to take away.")
@click.option("--reason", required=True, help="Why: kept with the ledger row.")
def grant_credits(account_name, amount_usd, reason):
    """Write a manual adjustment to an account's ledger."""
    try:
        account = accounts.get_account(account_name)
        accounts.grant(account, usd_to_micros(amount_usd), reason, source_ref=f"adjustment:{uuid.uuid4().hex}")
    except LunosError as error:
        _fail(error)
    db.session.refresh(account)
    click.echo(f"adjusted {account.name!r} by {amount_usd} USD; balance now {format_usd(account.balance_micros)} USD")


@lunos_cli.command("release-reservations")
@click.option("--older-than-minutes", default=60, show_default=True, type=click.IntRange(min=1))
def release_reservations(older_than_minutes):
    """Release reservations left open by requests that died mid-way (a killed worker), unbilled."""
    released = credits.release_stale(timedelta(minutes=older_than_minutes))
    click.echo(f"released {released} reservation(s)")


def init_app(app):
    app.cli.add_command(lunos_cli)
