"""gunicorn's logger, with each access-log atom computed when the log format reads it.

The stock logger copies and escapes every request header, response header and WSGI environ
entry on every request (a tenth of what a short stream costs the worker) to fill a format that
reads nine of them. The atoms, their escaping and the "-" for what is missing are the stock ones,
so any ``access_log_format`` prints the same line. Set in gunicorn.conf.py as ``logger_class``.
"""
import os
from collections.abc import Mapping

from gunicorn.glogging import Logger


class AccessLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        return _Atoms(self, resp, req, environ, request_time)

    @staticmethod
    def atoms_wrapper_class(atoms):
        return atoms  # _Atoms escapes what it hands out


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


def _status(atoms):
    status = atoms.resp.status
    return status.split(None, 1)[0] if isinstance(status, str) else status


def _sent(atoms):
    sent = getattr(atoms.resp, "sent", None)
    return sent is not None and str(sent) or "-"


_ATOMS = {
    "h": lambda a: a.environ.get("REMOTE_ADDR", "-"),
    "l": lambda a: "-",
    "u": lambda a: a.logger._get_user(a.environ) or "-",
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
    "L": lambda a: "%d.%06d" % (a.time.seconds, a.time.microseconds),
    "p": lambda a: f"<{os.getpid()}>",
}
