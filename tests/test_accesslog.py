"""The lazy access-log atoms print exactly what gunicorn's own logger prints."""

import datetime
import logging
import os
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from lunos.accesslog import AccessLogger

FORMATS = [
    Config().access_log_format,  # gunicorn's default, the one gunicorn.conf.py keeps
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(B)s %(m)s %(U)s %(q)s %(H)s %(T)s %(D)s %(M)s %(L)s %(p)s',
    "%({x-app-id}i)s %({X-Request-Id}o)s %({Content-Type}O)s %({wsgi.url_scheme}e)s %({missing}i)s %(zz)s %({odd}x)s",
]


def line(logger_class, fmt, resp, req, environ):
    """The line ``logger_class`` writes for one request, through ``access``, as workers call it."""
    config = Config()
    config.set("accesslog", os.devnull)
    config.set("access_log_format", fmt)
    logger = logger_class(config)
    logger.now = lambda: "[22/Nov/2026:05:00:00 +0000]"
    written = []
    handler = logging.Handler()
    handler.emit = lambda record: written.append(record.getMessage())
    logger.access_log.addHandler(handler)
    try:
        logger.access(resp, req, environ, datetime.timedelta(seconds=1, microseconds=2345))
    finally:
        logger.access_log.removeHandler(handler)
    [text] = written
    return text


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("sent", [512, None])
def test_lines_match_gunicorns_own(fmt, sent):
    environ = {
        "REMOTE_ADDR": "10.0.0.7",
        "REQUEST_METHOD": "POST",
        "RAW_URI": "/v1/chat/completions?x=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": "/v1/chat/completions",
        "QUERY_STRING": "x=1",
        "HTTP_USER_AGENT": 'OpenAI/Python "1.0"',
        "HTTP_AUTHORIZATION": "Basic dXNlcjpwdw==",
        "wsgi.url_scheme": "https",
    }
    req = SimpleNamespace(headers=[("X-APP-ID", "first"), ("X-APP-ID", 'dash"board'), ("USER-AGENT", "sdk")])
    resp = SimpleNamespace(
        status="200 OK", sent=sent, headers=[("Content-Type", "text/event-stream"), ("x-request-id", "req-1")]
    )
    assert line(AccessLogger, fmt, resp, req, environ) == line(Logger, fmt, resp, req, environ)


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic dXNlcjpwdw==", "basic  dXNlcjpwdw== ", "Basic !!!", "Basic", "Basic /w==", "Bearer sk-lunos-x"],
)
def test_the_user_is_read_as_gunicorn_reads_it(authorization):
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/", "SERVER_PROTOCOL": "HTTP/1.1"}
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    req, resp = SimpleNamespace(headers=[]), SimpleNamespace(status="200 OK", sent=1, headers=[])
    assert line(AccessLogger, "%(u)s", resp, req, environ) == line(Logger, "%(u)s", resp, req, environ)


def test_access_writes_the_line_through_logging(tmp_path):
    written = {}
    for logger_class in (Logger, AccessLogger):
        config = Config()
        config.set("accesslog", str(tmp_path / f"{logger_class.__name__}.log"))
        logger = logger_class(config)
        logger.now = lambda: "[22/Nov/2026:05:00:00 +0000]"  # both lines in the same second
        environ = {
            "REMOTE_ADDR": "127.0.0.1",
            "REQUEST_METHOD": "GET",
            "RAW_URI": "/healthz",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        logger.access(
            SimpleNamespace(status="200 OK", sent=2, headers=[]),
            SimpleNamespace(headers=[]),
            environ,
            datetime.timedelta(microseconds=10),
        )
        for handler in logger.access_log.handlers:
            handler.flush()
        written[logger_class] = (tmp_path / f"{logger_class.__name__}.log").read_text()
        logger.access_log.handlers.clear()
    assert '"GET /healthz HTTP/1.1" 200 2' in written[AccessLogger]
    assert written[AccessLogger] == written[Logger]
