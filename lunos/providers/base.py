"""What every provider adapter implements, and the failures it reports to the router."""
import time

RETRYABLE_STATUSES = frozenset({408, 409, 429})

# What a stream yields, in place of a batch of chunks, after each quiet interval without a
# byte from its upstream: the gateway sends a keep-alive comment.
QUIET = type("Quiet", (), {"__repr__": lambda self: "QUIET"})()


class ProviderError(Exception):
    """One failed upstream attempt. The router decides whether to retry or move on."""

    def __init__(self, message, *, status=None, retryable=False, timed_out=False, retry_after=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.timed_out = timed_out
        self.retry_after = retry_after

    @classmethod
    def from_status(cls, status, message, retry_after=None):
        retryable = status in RETRYABLE_STATUSES or status >= 500
        return cls(f"HTTP {status}: {message}", status=status, retryable=retryable,
                   retry_after=retry_after)


def parse_retry_after(value):
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class Provider:
    """One configured upstream. Adapters translate the OpenAI request and answer both ways.

    ``complete`` returns a ``chat.completion`` dict. ``open_stream`` returns a ChunkStream once the
    upstream has accepted the request; failures before that raise ProviderError so the router
    can still retry or fall back.
    """
    kind = None

    def __init__(self, config, http):
        self.config = config
        self.http = http

    def complete(self, model, body):
        raise NotImplementedError

    def open_stream(self, model, body):
        raise NotImplementedError


class ChunkStream:
    """Iterates lists of chat.completion.chunk dicts from one upstream response, one list per
    read (several when they queued up), or QUIET. The greenlet that reads it also closes it."""

    def __init__(self, chunks, response=None):
        self._chunks = chunks
        self.response = response

    def __iter__(self):
        return iter(self._chunks)

    def close(self):
        """End the reading (its generator's finally closes the response) and close the response,
        which a stream closed before its first read needs. Safe to call more than once."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        if self.response is not None:
            self.response.close()
