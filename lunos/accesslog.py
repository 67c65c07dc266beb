"""gunicorn's logger, with each access-log atom computed when the log format reads it.

The stock logger copies and escapes every request header, response header and WSGI environ
entry on every request (about half of what writing its line costs) to fill a format that reads
nine of them. The atoms, their escaping and the "-" for what is missing are the stock ones, so
any ``access_log_format`` prints the same line. Set in gunicorn.conf.py as ``logger_class``.

It overrides ``access``, the method gunicorn's workers call on their logger once per request
(the interface a ``logger_class`` provides), and uses only the stock logger's public names.
"""

import base64
import binascii
import os
import traceback
from collections.abc import Mapping

from gunicorn.glogging import Logger


class AccessLogger(Logger):
    def access(self, resp, req, environ, request_time) -> None:
        """Write the access line of one request, as the stock logger would."""
        if not self.access_log_enabled:
            return
        try:
            self.access_log.info(self.cfg.access_log_format, _Atoms(self, resp, req, environ, request_time))
        except Exception:  # noqa: BLE001  (gunicorn's own logger does the same: a log line never fails a request)
            self.error(traceback.format_exc())


class _Atoms(Mapping):
    def __init__(self, logger, resp, req, environ, request_time):
        self.logger, self.resp, self.req, self.environ, self.time = logger, resp, req, environ, request_time

    def __getitem__(self, key):
        value = self._value(key)
        return value.replace('"', '\\"') if isinstance(value, str) else value

    def __iter__(self):
        return iter(())

    def __len__(self):
        return 1  # logging only formats with a mapping that is not empty

    def _value(self, key):
        if key.startswith("{"):
            key = key.lower()
            name, kind = key[1:-2], key[-1:]
            if key[-2:-1] != "}":
                return "-"
            if kind == "i":
                return _last(getattr(self.req, "headers", self.req), name)
            if kind == "o":
                return _last(self.resp.headers, name)
            if kind == "e":
                return _last(self.environ, name)
            return "-"
        atom = _ATOMS.get(key)
        return "-" if atom is None else atom(self)


def _last(headers, name):
    """The value of the last of ``headers`` (a mapping, or pairs) named ``name``, case-insensitive,
    as a dict built from them holds."""
    found = "-"
    for key, value in headers.items() if hasattr(headers, "items") else headers:
        if key.lower() == name:
            found = value
    return found


def _basic_user(environ):
    """The user name of an ``Authorization: Basic`` header, as gunicorn's logger reads it."""
    auth = environ.get("HTTP_AUTHORIZATION")
    if not auth or not auth.lower().startswith("basic"):
        return None
    parts = auth.split(" ", 1)
    if len(parts) != 2:
        return None
    try:
        return base64.b64decode(parts[1].strip().encode("utf-8")).split(b":", 1)[0].decode("utf-8")
    except (TypeError, binascii.Error, UnicodeDecodeError):
        return None


def _status(atoms):
    status = atoms.resp.status
    return status.split(None, 1)[0] if isinstance(status, str) else status


def _sent(atoms):
    sent = getattr(atoms.resp, "sent", None)
    return sent is not None and str(sent) or "-"


_ATOMS = {
    "h": lambda a: a.environ.get("REMOTE_ADDR", "-"),
    "l": lambda a: "-",
    "u": lambda a: _basic_user(a.environ) or "-",
    "t": lambda a: a.logger.now(),
    "r": lambda a: f"{a.environ['REQUEST_METHOD']} {a.environ['RAW_URI']} {a.environ['SERVER_PROTOCOL']}",
    "s": _status,
    "m": lambda a: a.environ.get("REQUEST_METHOD"),
    "U": lambda a: a.environ.get("PATH_INFO"),
    "q": lambda a: a.environ.get("QUERY_STRING"),
    "H": lambda a: a.environ.get("SERVER_PROTOCOL"),
    "b": _sent,
    "B": lambda a: getattr(a.resp, "sent", None),
    "f": lambda a: a.environ.get("HTTP_REFERER", "-"),
    "a": lambda a: a.environ.get("HTTP_USER_AGENT", "-"),
    "T": lambda a: a.time.seconds,
    "D": lambda a: a.time.seconds * 1000000 + a.time.microseconds,
    "M": lambda a: a.time.seconds * 1000 + int(a.time.microseconds / 1000),
    "L": lambda a: f"{a.time.seconds}.{a.time.microseconds:06d}",
    "p": lambda a: f"<{os.getpid()}>",
}
