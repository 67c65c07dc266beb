"""The requests a server is answering, counted so that a stop can wait for them to finish."""

import threading


class InFlight:
    """WSGI middleware counting the requests whose response has not been closed yet: a streamed
    answer counts until its close, where it settles. Once ``draining``, each answer asks its
    client to close the connection, so that a connection kept alive brings no new request."""

    def __init__(self, app):
        self.app = app
        self.count = 0
        self.draining = False
        self._changed = threading.Condition()

    def __call__(self, environ, start_response):
        with self._changed:
            self.count += 1
        try:
            return _Counted(self.app(environ, self._start_response(start_response)), self._done)
        except BaseException:
            self._done()
            raise

    def _start_response(self, start_response):
        def start(status, headers, exc_info=None):
            if self.draining:
                headers = [(name, value) for name, value in headers if name.lower() != "connection"]
                headers.append(("Connection", "close"))
            return start_response(status, headers, exc_info)

        return start

    def _done(self):
        with self._changed:
            self.count -= 1
            self._changed.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """True once no request is being answered; False if some still are after ``timeout_s``."""
        with self._changed:
            return self._changed.wait_for(lambda: not self.count, timeout_s)


class _Counted:
    """A response body that is counted done when the server closes it, even if its own close fails."""

    def __init__(self, body, done):
        self.body, self.done = body, done

    def __iter__(self):
        return iter(self.body)

    def close(self):
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            self.done()
