"""Every way a metered request can end leaves exactly one usage event with a final status, and
its reservation released or settled: answered, refused, upstream failure, client disconnect, and
an unexpected exception (an adapter's bug) on open, mid-stream or after the answer."""

import threading

import pytest
import requests
import sqlalchemy as sa

from lunos.extensions import db
from lunos.gateway import current_gateway
from lunos.models import Account, App
from lunos.providers.base import QUIET, ChunkStream
from lunos.services import chat as chat_service
from tests.api.test_chat import chat, sse_events
from tests.conftest import money, set_plan, usage_events
from tests.upstream import Reply


def one_event(app, account):
    """The account's single usage event, with its books balanced and nothing reserved."""
    [event] = usage_events(app, account)
    balance, ledger, reserved = money(app, account)
    assert (balance == ledger, reserved) == (True, 0)
    return event


def provider(app, name="fake"):
    with app.app_context():
        return current_gateway().router.providers[name]


@pytest.mark.parametrize("stream", [False, True])
def test_answered(app, client, auth, account, stream):
    response = chat(client, auth, model="test/primary", stream=stream)
    assert response.status_code == 200
    event = one_event(app, account)
    assert (event.status, event.stream, event.cost_micros) == ("ok", stream, 25)


@pytest.mark.parametrize("stream", [False, True])
def test_refused(app, client, auth, account, stream):
    set_plan(app, account, "echo-only")
    response = chat(client, auth, model="test/primary", stream=stream)
    assert response.status_code == 403
    event = one_event(app, account)
    assert (event.status, event.http_status, event.cost_micros) == ("refused", 403, 0)


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_failure(app, client, auth, account, upstream, stream):
    upstream.script("primary", Reply(status=503, message="down"))
    assert chat(client, auth, model="test/primary", stream=stream).status_code == 502
    event = one_event(app, account)
    assert (event.status, event.http_status, event.cost_micros) == ("upstream_error", 502, 0)


def test_stream_broken_after_output(app, client, auth, account, upstream):
    upstream.script("primary", Reply(words=("a", " b", " c"), reset_after=2))
    events = sse_events(chat(client, auth, model="test/primary", stream=True))
    assert events[-1]["error"]["type"] == "upstream_error"
    event = one_event(app, account)
    assert event.status == "upstream_error" and event.completion_tokens > 0 and event.cost_micros > 0


def test_client_disconnect(app, live_server, api_key, account, upstream):
    upstream.script("primary", Reply(words=tuple(f" w{i}" for i in range(50)), chunk_delay_s=0.05))
    response = requests.post(
        f"{live_server}/v1/chat/completions",
        stream=True,
        timeout=10,
        headers={"Authorization": f"Bearer {api_key}"},
        json={
            "model": "test/primary",
            "stream": True,
            "user": "guard-leaver",
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    for piece in response.iter_content(chunk_size=None):
        if b"w1" in piece:
            break
    response.close()
    assert upstream.wait_disconnect("guard-leaver")
    for _ in range(100):
        if usage_events(app, account):
            break
        threading.Event().wait(0.05)
    event = one_event(app, account)
    assert event.status == "client_disconnected" and event.cost_micros > 0


def _raise_runtime_error(*_args, **_kwargs):
    raise RuntimeError("a bug in an adapter")


@pytest.mark.parametrize("stream", [False, True])
def test_adapter_raising_on_open(app, client, auth, account, monkeypatch, stream):
    fake = provider(app)
    monkeypatch.setattr(fake, "open_stream" if stream else "complete", _raise_runtime_error)
    response = chat(client, auth, model="test/primary", stream=stream)
    assert response.status_code == 500
    assert response.get_json()["error"]["type"] == "api_error"
    assert "Traceback" not in response.get_data(as_text=True)
    event = one_event(app, account)
    assert (event.status, event.http_status, event.cost_micros) == ("error", 500, 0)


def test_adapter_raising_mid_stream(app, client, auth, account, monkeypatch):
    fake = provider(app)
    opened = fake.open_stream

    def open_then_break(model, body):
        upstream = opened(model, body)

        def batches():  # one chunk a batch; the third one breaks
            for number, chunk in enumerate(chunk for batch in upstream if batch is not QUIET for chunk in batch):
                if number == 2:
                    raise RuntimeError("a bug while translating a chunk")
                yield [chunk]

        return ChunkStream(batches(), upstream.response)

    monkeypatch.setattr(fake, "open_stream", open_then_break)
    response = chat(client, auth, model="test/primary", stream=True)
    assert response.status_code == 200
    events = sse_events(response)
    assert events[-1]["error"]["type"] == "api_error"
    event = one_event(app, account)
    assert event.status == "error" and event.stream


def test_bug_after_the_answer(app, client, auth, account, monkeypatch):
    monkeypatch.setattr(chat_service, "with_cost", _raise_runtime_error)
    assert chat(client, auth, model="test/primary").status_code == 500
    assert one_event(app, account).status == "error"


def test_a_request_that_never_finishes_its_meter_is_finished_at_teardown(app, client, auth, account, monkeypatch):
    monkeypatch.setattr(chat_service.Completion, "answer", _raise_runtime_error)
    assert chat(client, auth, model="test/primary").status_code == 500
    event = one_event(app, account)
    assert (event.status, event.http_status) == ("error", 500)


def _in_a_thread(call, timeout_s=20):
    """Run ``call`` in a thread; fail (instead of hanging the suite) if it waits on itself."""
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("value", call()), daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), "the request is waiting on a lock its own transaction holds"
    return outcome["value"]


def test_an_orm_write_mid_request_does_not_wait_on_itself(make_app, account_id_and_key):
    # SQLite's busy timeout is 10 s; the request path must not meet it at all.
    app = make_app()
    account, secret = account_id_and_key(app)
    fake = provider(app)
    complete = fake.complete

    def complete_after_an_orm_write(model, body):
        db.session.get(Account, account).flag_reason = "written mid-request"
        db.session.add(App(account_id=account, app_id="orm-app", name="Written mid-request"))
        db.session.flush()  # uncommitted writes on the session's connection, row locks held
        return complete(model, body)

    fake.complete = complete_after_an_orm_write
    client = app.test_client()
    response = _in_a_thread(lambda: chat(client, {"Authorization": f"Bearer {secret}"}, model="test/primary"))
    assert response.status_code == 200, response.get_json()
    event = one_event(app, account)
    assert event.status == "ok"
    with app.app_context():
        assert db.session.get(Account, account).flag_reason == "written mid-request"
        assert db.session.scalar(sa.select(App.name).where(App.app_id == "orm-app")) == "Written mid-request"


def test_an_orm_write_before_the_reservation_does_not_wait_on_itself(make_app, account_id_and_key, monkeypatch):
    app = make_app()
    account, secret = account_id_and_key(app)
    from lunos.services import metering

    admit = metering.limits.admit

    def admit_after_an_orm_write(key_id, quota):
        db.session.get(Account, account).flag_reason = "written before the reservation"
        db.session.flush()
        return admit(key_id, quota)

    monkeypatch.setattr(metering.limits, "admit", admit_after_an_orm_write)
    client = app.test_client()
    response = _in_a_thread(lambda: chat(client, {"Authorization": f"Bearer {secret}"}, model="test/primary"))
    assert response.status_code == 200, response.get_json()
    assert one_event(app, account).status == "ok"
    with app.app_context():
        assert db.session.get(Account, account).flag_reason == "written before the reservation"


@pytest.fixture
def account_id_and_key():
    from lunos.services import accounts, keys

    def create(app):
        with app.app_context():
            account = accounts.create_account("orm-writer", accounts.usd_to_micros("10"))
            _key, secret = keys.create_key(account, app.config["SECRET_KEY"])
            return account.id, secret

    return create


def test_a_stream_that_fails_before_any_output_records_the_status_it_ended_with(app, client, auth, account, upstream):
    upstream.script("primary", Reply(words=("never",), reset_after=0))
    events = sse_events(chat(client, auth, model="test/primary", stream=True))
    assert events[-1]["error"]["type"] == "upstream_error"
    event = one_event(app, account)
    assert (event.status, event.http_status, event.cost_micros) == ("upstream_error", 502, 0)
