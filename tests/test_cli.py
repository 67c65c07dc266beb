"""The operator CLI: ``flask --app app lunos ...``."""

from sqlalchemy import func, select

from lunos.extensions import db
from lunos.models import Account, LedgerEntry


def test_create_account_and_key_then_call_with_it(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["lunos", "create-account", "acme-cli", "--credits", "12.5"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.name == "acme-cli"))
        assert account.balance_micros == 12_500_000
        ledger = db.session.scalar(
            select(func.sum(LedgerEntry.amount_micros)).where(LedgerEntry.account_id == account.id)
        )
        assert ledger == account.balance_micros

    result = runner.invoke(args=["lunos", "create-key", "--account", "acme-cli", "--name", "ci"])
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert secret.startswith("sk-lunos-")
    response = app.test_client().get("/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200


def test_secret_is_not_stored(app):
    runner = app.test_cli_runner()
    runner.invoke(args=["lunos", "create-account", "acme-secret"])
    secret = runner.invoke(args=["lunos", "create-key", "--account", "acme-secret"]).output.strip().splitlines()[-1]
    with app.app_context():
        rows = db.session.execute(db.text("SELECT * FROM api_keys")).all()
    assert rows and not any(secret in str(value) for row in rows for value in row)


def test_errors_are_clear(app):
    runner = app.test_cli_runner()
    missing = runner.invoke(args=["lunos", "create-key", "--account", "ghost"])
    assert missing.exit_code != 0 and "no account named 'ghost'" in missing.output
    runner.invoke(args=["lunos", "create-account", "twice"])
    again = runner.invoke(args=["lunos", "create-account", "twice"])
    assert again.exit_code != 0 and "already exists" in again.output
    negative = runner.invoke(args=["lunos", "create-account", "neg", "--credits", "-3"])
    assert negative.exit_code != 0
    garbage = runner.invoke(args=["lunos", "create-account", "junk", "--credits", "lots"])
    assert garbage.exit_code != 0 and "lots" in garbage.output
