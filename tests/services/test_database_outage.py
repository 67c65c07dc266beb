"""A database that goes away and comes back (a loopback TCP proxy in front of PostgreSQL that the
test stops and starts): metered routes answer 503 meanwhile, the first request after succeeds,
and an answer that went out while it was away is billed once when it returns, even by another
worker."""

import pytest

from lunos.gateway import current_gateway
from tests.api.test_chat import chat, sse_events
from tests.conftest import money, usage_events
from tests.tcp_proxy import TcpProxy


@pytest.fixture
def proxy(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("a database that goes away: PostgreSQL behind a TCP proxy")
    proxy = TcpProxy("127.0.0.1", 5432)
    yield proxy
    proxy.stop()


@pytest.fixture
def behind_proxy(make_app, database_url, proxy, tmp_path):
    """build(): an app (a worker) on the test database through the proxy, with its own spool."""

    def build():
        url = database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}", 1)
        return make_app(DATABASE_URL=url, SPOOL_DIR=str(tmp_path / "spool"))

    return build


def settled(app, account):
    [event] = usage_events(app, account)
    balance, ledger, reserved = money(app, account)
    assert balance == ledger and reserved == 0
    return event


def test_503_while_away_and_the_first_request_after_succeeds(behind_proxy, proxy, auth):
    client = behind_proxy().test_client()
    assert chat(client, auth).status_code == 200  # the pool holds a live connection now
    proxy.stop()
    for path in ("/v1/chat/completions", "/v1/balance"):
        response = (
            client.post(path, json={"messages": [{"role": "user", "content": "hi"}]}, headers=auth)
            if path.endswith("completions")
            else client.get(path, headers=auth)
        )
        assert response.status_code == 503, (path, response.get_json())
        assert response.get_json()["error"]["type"] == "service_unavailable"
    proxy.start()
    assert chat(client, auth).status_code == 200


def _database_goes_away_during_the_call(app, proxy, stream):
    with app.app_context():
        fake = current_gateway().router.providers["fake"]
    name = "open_stream" if stream else "complete"
    call = getattr(fake, name)

    def call_while_the_database_goes_away(model, body):
        proxy.stop()  # admitted and reserved; the settlement will find no database
        return call(model, body)

    setattr(fake, name, call_while_the_database_goes_away)


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_that_went_out_is_billed_once_the_database_returns(app, behind_proxy, proxy, auth, account, stream):
    worker = behind_proxy()
    _database_goes_away_during_the_call(worker, proxy, stream)
    response = chat(worker.test_client(), auth, model="test/primary", stream=stream)
    assert response.status_code == 200
    if stream:
        assert sse_events(response)[-1] == "[DONE]"
    else:
        assert response.get_json()["choices"][0]["message"]["content"] == "Hello from upstream"
    pending = worker.extensions["lunos-pending"]
    assert len(pending) == 1
    proxy.start()
    assert pending.drain(deadline_s=30)
    event = settled(app, account)
    assert (event.status, event.prompt_tokens, event.completion_tokens, event.cost_micros) == ("ok", 11, 7, 25)
    assert money(app, account)[0] == 10_000_000 - 25
    assert pending.drain(deadline_s=1) and len(usage_events(app, account)) == 1, "billed once"


def test_a_kept_settlement_outlives_its_worker(app, behind_proxy, proxy, auth, account):
    first = behind_proxy()
    _database_goes_away_during_the_call(first, proxy, stream=False)
    assert chat(first.test_client(), auth, model="test/primary").status_code == 200
    first.extensions["lunos-pending"].close(deadline_s=0.5)  # the worker exits, the database still away
    assert usage_events(app, account) == []

    proxy.start()
    second = behind_proxy()  # another worker on the same host
    pending = second.extensions["lunos-pending"]
    assert pending.adopt_orphans() == 1
    assert pending.drain(deadline_s=30)
    assert settled(app, account).cost_micros == 25
    assert pending.adopt_orphans() == 0, "adopted once"
