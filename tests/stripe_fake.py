"""A loopback fake of the parts of the Stripe API Lunos calls, recording what it was sent.

Tests set what Stripe holds (``subscriptions``, ``charges``, ``refunds``, ``invoice_payments``);
``hold(path)`` keeps the next answer to a path (made when the call arrives, as Stripe would make
it) waiting until released, so a test can have an older fetch arrive after a newer one;
``probe`` runs on every call, in the fake's thread, while Lunos waits for the answer (it
records whether the database could be written meanwhile).
"""

import copy
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

from tests.fake_http import LoopbackServer, send_json


@dataclass
class Call:
    method: str
    path: str
    form: dict
    headers: dict
    query: dict = field(default_factory=dict)
    probe: object = None  # what ``FakeStripe.probe`` returned during the call


class FakeStripe(LoopbackServer):
    def __init__(self):
        self.calls = []
        self.arrived = threading.Condition()
        self.fail_with = None  # (status, message): answer every call with this error
        self.charges = {}  # charge id -> customer id, or the whole charge, for GET /v1/charges/{id}
        self.subscriptions = {}  # id -> subscription, for GET /v1/subscriptions/{id}
        self.refunds = {}  # charge id -> its refunds, for GET /v1/refunds?charge=
        self.invoice_payments = {}  # invoice id -> its InvoicePayments, for GET /v1/invoice_payments?invoice=
        self.probe = None
        self._next_held = {}  # path -> Event: the next call to path waits for it
        self._held = {}
        super().__init__(_Handler)

    def calls_to(self, path):
        return [c for c in self.calls if c.path == path]

    def reset(self):
        self.release_all()
        self.calls.clear()
        self.charges.clear()
        self.subscriptions.clear()
        self.refunds.clear()
        self.invoice_payments.clear()
        self.fail_with = None
        self.probe = None

    def subscribe(self, subscription_id, customer="cus_A", price="price_pro", status="active", **fields):
        """Put a subscription into the fake Stripe (or change it): what Lunos will retrieve."""
        self.subscriptions[subscription_id] = {
            "id": subscription_id,
            "object": "subscription",
            "customer": customer,
            "status": status,
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": f"si_{subscription_id}",
                        "object": "subscription_item",
                        "price": {"id": price, "object": "price"},
                    }
                ],
            },
            "metadata": {},
            **fields,
        }
        return self.subscriptions[subscription_id]

    def hold(self, path):
        """Keep the next answer to ``path`` waiting until ``release(path)``."""
        self._next_held[path] = self._held[path] = threading.Event()

    def release(self, path):
        self._next_held.pop(path, None)
        self._held.pop(path).set()

    def release_all(self):
        for path in list(self._held):
            self.release(path)

    def wait_for(self, path, count=1, timeout=10):
        """Until ``count`` calls to ``path`` arrived (a test's synchronisation, not a timing)."""
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.calls_to(path)) >= count, timeout)


def _page(url, data):
    return {"object": "list", "url": url, "has_more": False, "data": data}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self, status, payload):
        send_json(self, status, payload)

    def _handle(self, method):
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(self.rfile.read(length).decode())) if length else {}
        url = urlsplit(self.path)
        path, query = url.path, dict(parse_qsl(url.query))
        call = Call(method, path, form, dict(self.headers), query)
        if fake.probe is not None:
            call.probe = fake.probe()
        with fake.arrived:
            fake.calls.append(call)
            number = len(fake.calls)
            held = fake._next_held.pop(path, None)
            fake.arrived.notify_all()
        status, payload = self._respond(fake, path, query, form, number)
        if held is not None:
            held.wait(30)
        self._answer(status, payload)

    @staticmethod
    def _respond(fake, path, query, form, number):
        missing = {"error": {"type": "invalid_request_error", "code": "resource_missing", "message": f"No {path}"}}
        if fake.fail_with:
            status, message = fake.fail_with
            return status, {
                "error": {"type": "invalid_request_error" if status == 400 else "api_error", "message": message}
            }
        if path == "/v1/customers":
            return 200, {"id": f"cus_{number}", "object": "customer", "name": form.get("name")}
        if path == "/v1/checkout/sessions":
            return 200, {
                "id": f"cs_test_{number}",
                "object": "checkout.session",
                "mode": form["mode"],
                "url": f"https://checkout.stripe.test/cs_test_{number}",
            }
        if path == "/v1/billing_portal/sessions":
            return 200, {
                "id": f"bps_{number}",
                "object": "billing_portal.session",
                "url": f"https://billing.stripe.test/bps_{number}",
            }
        if path.startswith("/v1/charges/"):
            charge = fake.charges.get(path.rsplit("/", 1)[1])
            if charge is None:
                return 404, missing
            if isinstance(charge, str):
                charge = {"customer": charge}
            return 200, {"id": path.rsplit("/", 1)[1], "object": "charge", **charge}
        if path.startswith("/v1/subscriptions/"):
            subscription = fake.subscriptions.get(path.rsplit("/", 1)[1])
            return (200, copy.deepcopy(subscription)) if subscription else (404, missing)
        if path == "/v1/refunds":
            return 200, _page(path, copy.deepcopy(fake.refunds.get(query.get("charge"), [])))
        if path == "/v1/invoice_payments":
            return 200, _page(
                path,
                [
                    p
                    for p in fake.invoice_payments.get(query.get("invoice"), [])
                    if query.get("status") in (None, p.get("status"))
                ],
            )
        return 404, {"error": {"type": "invalid_request_error", "message": f"No such route {path}"}}

    def do_POST(self):
        self._handle("POST")

    def do_GET(self):
        self._handle("GET")
