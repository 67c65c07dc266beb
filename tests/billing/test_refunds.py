"""Refunds and disputes: what a payment bought taken back once, failed refunds and won disputes
given back once, other currencies and unknown payments listed for the operator."""

import pytest

from lunos import ledger
from lunos.extensions import db
from lunos.models import Account
from lunos.services.prepared import transaction
from tests.billing.conftest import ADMIN_TOKEN
from tests.billing.stripe_events import (
    CENT,
    balance,
    charge,
    deliver,
    dispute,
    event,
    invoice,
    invoice_payment,
    refund,
    topup_session,
)

USD = 1_000_000


@pytest.fixture
def topped_up(billing_app, billing_client, account, customer):
    """A $20 top-up paid by PaymentIntent pi_topup (charge ch_1)."""
    deliver(billing_client, event("checkout.session.completed", topup_session(account)))
    return balance(billing_app, account)


def refunded(client, stripe_fake, *refunds, charge_id="ch_1", kind="charge.refunded", **charge_fields):
    """Stripe now lists ``refunds`` for the charge; an event says so."""
    stripe_fake.refunds[charge_id] = list(refunds)
    standing = sum(r["amount"] for r in refunds if r["status"] not in ("failed", "canceled"))
    if kind == "charge.refunded":
        obj = charge(charge_id, amount_refunded=standing, **charge_fields)
    else:
        obj = refunds[-1]
    response = deliver(client, event(kind, obj))
    assert response.status_code == 200, response.get_json()
    return response


@pytest.mark.parametrize("late_first", [False, True])
def test_topup_refund_in_two_parts_takes_back_what_was_refunded(
    billing_app, billing_client, account, topped_up, stripe_fake, late_first
):
    first, second = refund("re_1", 300, created=100), refund("re_2", 700, created=200)
    if late_first:  # the later event is delivered first: Stripe's list is what counts
        refunded(billing_client, stripe_fake, first, second)
        refunded(billing_client, stripe_fake, first)
    else:
        refunded(billing_client, stripe_fake, first)
        refunded(billing_client, stripe_fake, first, second)
    refunded(billing_client, stripe_fake, first, second)  # a repeat under a new event id
    assert topped_up - balance(billing_app, account) == 1000 * CENT
    [asked, *_] = stripe_fake.calls_to("/v1/refunds")
    assert asked.query == {"charge": "ch_1", "limit": "100"}


def test_subscription_invoice_refund_takes_back_its_credits_in_proportion(
    billing_app, billing_client, account, customer, stripe_fake
):
    stripe_fake.subscribe("sub_1", price="price_pro")  # $50 of credits, sold here for $20
    stripe_fake.invoice_payments["in_1"] = [invoice_payment("in_1", "pi_in_1", 2000)]
    deliver(billing_client, event("invoice.paid", invoice("in_1", reason="subscription_create", paid=2000)))
    granted = balance(billing_app, account)
    quarter = refund("re_1", 500, charge_id="ch_in", payment_intent="pi_in_1", created=1)
    refunded(billing_client, stripe_fake, quarter, charge_id="ch_in", payment_intent="pi_in_1")
    assert granted - balance(billing_app, account) == 12_500_000, "a quarter refunded: a quarter of $50"
    thirds = [refund(f"re_{n}", 500, charge_id="ch_in", payment_intent="pi_in_1", created=n) for n in (2, 3, 4)]
    refunded(billing_client, stripe_fake, quarter, *thirds, charge_id="ch_in", payment_intent="pi_in_1")
    assert granted - balance(billing_app, account) == 50 * USD, "refunded in full: the credits exactly, in parts"


def test_failed_refund_gives_the_debit_back_once(billing_app, billing_client, account, topped_up, stripe_fake):
    standing = refund("re_1", 500, status="pending", created=1)
    refunded(billing_client, stripe_fake, standing)
    assert topped_up - balance(billing_app, account) == 500 * CENT
    failed = {**standing, "status": "failed"}
    refunded(billing_client, stripe_fake, failed, kind="refund.failed")
    refunded(billing_client, stripe_fake, failed, kind="charge.refund.updated")
    refunded(billing_client, stripe_fake, failed)  # charge.refunded, whatever its amount_refunded says
    assert balance(billing_app, account) == topped_up, "given back once"
    # A stale list (fetched before the failure) cannot debit it again; a new refund still counts.
    refunded(billing_client, stripe_fake, standing, refund("re_2", 200, created=2))
    assert topped_up - balance(billing_app, account) == 200 * CENT


def test_refund_seen_failed_first_is_never_debited(billing_app, billing_client, account, topped_up, stripe_fake):
    refunded(billing_client, stripe_fake, refund("re_1", 500, status="failed"), kind="refund.failed")
    refunded(billing_client, stripe_fake, refund("re_1", 500, status="pending"))  # an older view, late
    assert balance(billing_app, account) == topped_up


def test_refund_in_another_currency_moves_nothing_and_is_listed(
    billing_app, billing_client, account, customer, topped_up, stripe_fake, attention
):
    yen = refund("re_jpy", 2900, charge_id="ch_jpy", currency="jpy", payment_intent="pi_jpy")
    refunded(billing_client, stripe_fake, yen, charge_id="ch_jpy", currency="jpy", amount=2900, payment_intent="pi_jpy")
    assert balance(billing_app, account) == topped_up, "not 29.00 USD"
    [notice] = attention()
    assert (notice["kind"], notice["stripe_object"], notice["account_id"]) == ("currency", "ch_jpy", account)
    assert "JPY" in notice["message"] and notice["event_id"].startswith("evt_")


def test_refund_of_a_payment_lunos_has_no_record_of_is_taken_one_for_one_and_listed(
    billing_app, billing_client, account, customer, stripe_fake, attention
):
    start = balance(billing_app, account)
    refunded(
        billing_client,
        stripe_fake,
        refund("re_1", 400, charge_id="ch_old", payment_intent="pi_old"),
        charge_id="ch_old",
        payment_intent="pi_old",
    )
    assert start - balance(billing_app, account) == 400 * CENT
    assert [n["kind"] for n in attention()] == ["unmatched_payment"]


def test_refund_events_without_the_charge_look_it_up(billing_app, billing_client, account, customer, stripe_fake):
    stripe_fake.charges["ch_old"] = charge("ch_old", amount=3000, payment_intent=None)
    start = balance(billing_app, account)
    refunded(
        billing_client,
        stripe_fake,
        refund("re_1", 700, charge_id="ch_old", payment_intent=None),
        charge_id="ch_old",
        kind="refund.created",
    )
    assert start - balance(billing_app, account) == 700 * CENT
    assert stripe_fake.calls_to("/v1/charges/ch_old")


def test_refunds_applied_by_the_previous_version_count(billing_app, billing_client, account, topped_up, stripe_fake):
    with billing_app.app_context(), transaction(db.engine) as tx:  # the earlier scheme: charge + cumulative
        ledger.post(tx, [ledger.entry(account, -500 * CENT, ledger.REFUND, f"refund:ch_1:{500 * CENT}")])
    refunded(billing_client, stripe_fake, refund("re_1", 500, created=1), refund("re_2", 300, created=2))
    assert topped_up - balance(billing_app, account) == 800 * CENT


def flag(app, account):
    with app.app_context():
        row = db.session.get(Account, account)
        return row.flagged, row.flag_reason


def test_dispute_takes_back_once_and_flags_then_won_gives_back_once(
    billing_app, billing_client, account, topped_up, stripe_fake
):
    opened = dispute("dp_1", cents=1500)
    assert deliver(billing_client, event("charge.dispute.created", opened)).status_code == 200
    deliver(billing_client, event("charge.dispute.created", opened))
    assert topped_up - balance(billing_app, account) == 1500 * CENT
    assert flag(billing_app, account) == (True, "Stripe dispute dp_1 (fraudulent)")
    assert not stripe_fake.calls_to("/v1/charges/ch_1"), "the payment is Lunos's own: no lookup"
    won = {**opened, "status": "won"}
    deliver(billing_client, event("charge.dispute.closed", won))
    deliver(billing_client, event("charge.dispute.closed", won))
    assert balance(billing_app, account) == topped_up
    assert flag(billing_app, account) == (False, None)


def test_lost_dispute_stays_taken(billing_app, billing_client, account, topped_up):
    deliver(billing_client, event("charge.dispute.created", dispute("dp_1", cents=1500)))
    deliver(billing_client, event("charge.dispute.closed", dispute("dp_1", cents=1500, status="lost")))
    assert topped_up - balance(billing_app, account) == 1500 * CENT
    assert flag(billing_app, account)[0] is True


def test_dispute_of_an_unknown_charge_looks_up_its_customer(
    billing_app, billing_client, account, customer, stripe_fake, attention
):
    stripe_fake.charges["ch_9"] = "cus_A"
    start = balance(billing_app, account)
    deliver(billing_client, event("charge.dispute.created", dispute("dp_9", charge_id="ch_9", payment_intent=None)))
    assert start - balance(billing_app, account) == 1500 * CENT
    assert flag(billing_app, account)[0] is True
    assert [n["kind"] for n in attention()] == ["unmatched_payment"]


def test_dispute_in_another_currency_flags_but_moves_nothing(
    billing_app, billing_client, account, topped_up, attention
):
    deliver(billing_client, event("charge.dispute.created", dispute("dp_1", cents=2900, currency="jpy")))
    assert balance(billing_app, account) == topped_up
    assert flag(billing_app, account)[0] is True
    assert [n["kind"] for n in attention()] == ["currency"]


def test_attention_list_is_the_operators(billing_client):
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert billing_client.get("/admin/billing/attention").status_code == 401
    response = billing_client.get("/admin/billing/attention?limit=0", headers=admin)
    assert response.status_code == 400 and response.get_json()["error"]["param"] == "limit"
    listed = billing_client.get("/admin/billing/attention", headers=admin)
    assert listed.get_json() == {"object": "list", "data": []}
