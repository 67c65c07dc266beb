"""A loopback fake of the parts of the Stripe API Lunos calls, recording what it was sent."""
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl

from tests.fake_http import LoopbackServer, send_json


@dataclass
class Call:
    method: str
    path: str
    form: dict
    headers: dict


class FakeStripe(LoopbackServer):
    def __init__(self):
        self.calls = []
        self.fail_with = None  # (status, message): answer every call with this error
        self.charges = {}      # charge id -> customer id, for GET /v1/charges/{id}
        super().__init__(_Handler)

    def calls_to(self, path):
        return [c for c in self.calls if c.path == path]

    def reset(self):
        self.calls.clear()
        self.charges.clear()
        self.fail_with = None

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
        path = self.path.split("?")[0]
        fake.calls.append(Call(method, path, form, dict(self.headers)))
        if fake.fail_with:
            status, message = fake.fail_with
            return self._answer(status, {"error": {"type": "invalid_request_error" if status == 400 else "api_error",
                                                   "message": message}})
        number = len(fake.calls)
        if path == "/v1/customers":
            return self._answer(200, {"id": f"cus_{number}", "object": "customer", "name": form.get("name")})
        if path == "/v1/checkout/sessions":
            return self._answer(200, {"id": f"cs_test_{number}", "object": "checkout.session", "mode": form["mode"],
                                      "url": f"https://checkout.stripe.test/cs_test_{number}"})
        if path == "/v1/billing_portal/sessions":
            return self._answer(200, {"id": f"bps_{number}", "object": "billing_portal.session",
                                      "url": f"https://billing.stripe.test/bps_{number}"})
        if path.startswith("/v1/charges/"):
            charge = path.rsplit("/", 1)[1]
            if charge in fake.charges:
                return self._answer(200, {"id": charge, "object": "charge", "customer": fake.charges[charge]})
        self._answer(404, {"error": {"type": "invalid_request_error", "message": f"No such route {path}"}})

    def do_POST(self):
        self._handle("POST")

    def do_GET(self):
        self._handle("GET")
