"""Every way an embeddings request can end leaves exactly one usage event with a final status,
and its reservation released or settled: answered, refused, upstream failure, an unexpected
exception in the adapter or after the answer, and a view that never finishes its meter."""

import pytest

from lunos.services import embeddings as embeddings_service
from tests.api.test_embeddings import embed
from tests.conftest import set_plan
from tests.services.test_settlement_guard import one_event, provider
from tests.upstream import Reply


@pytest.mark.parametrize("model, cost", [("test/embed", 11), ("test/echo-embed", 3)])
def test_answered(app, client, auth, account, model, cost):
    assert embed(client, auth, model=model).status_code == 200
    event = one_event(app, account)
    assert (event.status, event.stream, event.cost_micros) == ("ok", False, cost)


@pytest.mark.parametrize("plan, status", [("echo-only", 403), ("dashboard-only", 403)])
def test_refused(app, client, auth, account, plan, status):
    set_plan(app, account, plan)
    assert embed(client, auth).status_code == status
    event = one_event(app, account)
    assert (event.status, event.http_status, event.cost_micros) == ("refused", status, 0)


@pytest.mark.parametrize(
    "reply", [Reply(status=503, message="down"), Reply(reset_after=0), Reply(status=400, message="input too long")]
)
def test_upstream_failure(app, client, auth, account, upstream, reply):
    upstream.script("embed", reply)
    response = embed(client, auth)
    assert response.status_code in (400, 502)
    event = one_event(app, account)
    assert (event.status, event.http_status, event.cost_micros) == ("upstream_error", response.status_code, 0)


def _raise_runtime_error(*_args, **_kwargs):
    raise RuntimeError("a bug")


@pytest.mark.parametrize("name, model", [("fake", "test/embed"), ("echo", "test/echo-embed")])
def test_adapter_raising(app, client, auth, account, monkeypatch, name, model):
    monkeypatch.setattr(provider(app, name), "embed", _raise_runtime_error)
    response = embed(client, auth, model=model)
    assert response.status_code == 500 and response.get_json()["error"]["type"] == "api_error"
    assert "Traceback" not in response.get_data(as_text=True)
    event = one_event(app, account)
    assert (event.status, event.http_status, event.cost_micros) == ("error", 500, 0)


def test_bug_after_the_answer(app, client, auth, account, monkeypatch):
    monkeypatch.setattr(embeddings_service, "micros_to_decimal", _raise_runtime_error)
    assert embed(client, auth).status_code == 500
    assert one_event(app, account).status == "error"


def test_a_request_that_never_finishes_its_meter_is_finished_at_teardown(app, client, auth, account, monkeypatch):
    monkeypatch.setattr(embeddings_service.Embedding, "answer", _raise_runtime_error)
    assert embed(client, auth).status_code == 500
    event = one_event(app, account)
    assert (event.status, event.http_status) == ("error", 500)
