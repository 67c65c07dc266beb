"""The one pooled HTTP client every provider shares, and its mapping of failures."""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from typing import Any

import gevent
import gevent.queue
import orjson
import requests
from gevent import monkey
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity, get_environ_proxies
from urllib3.exceptions import ReadTimeoutError

from lunos import __version__
from lunos.errors import InvalidRequest
from lunos.providers.base import QUIET, ProviderError, parse_retry_after
from lunos.schemas import bounded_json

USER_AGENT = f"lunos/{__version__}"


class UpstreamHTTP:
    """One pooled requests transport for every provider.

    Requests go straight to the HTTPAdapter: a Session would merge cookies, hooks and the proxy
    and CA environment on every call, most of requests' per-call cost, and none of it applies
    to upstream APIs. The environment is read once instead: proxies per upstream host
    (HTTPS_PROXY, NO_PROXY), the CA bundle at start.
    """

    def __init__(self, pool_size: int, connect_timeout_s: float, quiet_s: float = 15.0):
        self.connect_timeout_s = connect_timeout_s
        self.quiet_s = quiet_s  # streams report each quiet interval, for keep-alive comments
        self.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._targets = {}
        # Retries belong to the router (it knows about fallbacks), so urllib3 does none.
        self.adapter = HTTPAdapter(pool_connections=16, pool_maxsize=pool_size, max_retries=0)

    def post_json(
        self, url: str, body: Any, *, headers: Mapping[str, str], timeout_s: float, stream: bool = False
    ) -> requests.Response:
        """POST ``body``; return the response when 2xx, raise ProviderError otherwise.

        ``timeout_s`` bounds every wait for bytes, so on a stream it is the longest silence.
        """
        try:
            request, proxies = self._prepare(url, headers, _compact(orjson.dumps(body)))
            response = self.adapter.send(
                request, stream=stream, verify=self.verify, proxies=proxies, timeout=(self.connect_timeout_s, timeout_s)
            )
        except requests.Timeout as exc:
            raise ProviderError(f"timed out: {exc.__class__.__name__}", retryable=True, timed_out=True) from None
        except requests.RequestException as exc:
            raise ProviderError(f"connection failed: {_reason(exc)}", retryable=True) from None
        if response.status_code >= 400:
            try:
                upstream = upstream_error(response)
            finally:
                response.close()
            raise ProviderError.from_status(
                response.status_code, upstream, parse_retry_after(response.headers.get("Retry-After"))
            )
        return response

    def _prepare(self, url, headers, data):
        """The request ``PreparedRequest.prepare`` would build, without parsing the URL again on
        every call (a tenth of a request's cost here), and its proxies."""
        request = requests.PreparedRequest()
        request.method = "POST"
        request.url, url_headers, proxies = self._targets.get(url) or self._target(url)
        request.headers = CaseInsensitiveDict({"User-Agent": USER_AGENT})
        for header in headers.items():
            check_header_validity(header)  # a key with a newline is an error, not a header
            request.headers[header[0]] = header[1]
        request.headers.update(url_headers)
        request.headers["Content-Length"] = str(len(data))
        request.body = data
        return request, proxies

    def _target(self, url):
        """An upstream URL as requests prepares it, the headers it implies (Basic auth from
        ``user:password@``), and the proxies the environment sets for it (HTTPS_PROXY, NO_PROXY):
        worked out once per URL of the catalog."""
        request = requests.PreparedRequest()
        request.prepare(method="POST", url=url)
        url_headers = {name: value for name, value in request.headers.items() if name == "Authorization"}
        self._targets[url] = request.url, url_headers, get_environ_proxies(url)
        return self._targets[url]

    def close(self) -> None:
        self.adapter.close()


def read_json(response: requests.Response) -> Any:
    """The body of a non-streamed answer as JSON; a broken or unparsable body is a ProviderError."""
    try:
        return response.json()
    except requests.Timeout:
        raise ProviderError("timed out reading the answer", retryable=True, timed_out=True) from None
    except (requests.RequestException, OSError) as exc:
        raise ProviderError(f"answer broke off: {exc.__class__.__name__}", retryable=True) from None
    except ValueError:
        raise ProviderError("upstream answered with invalid JSON", retryable=True) from None
    finally:
        response.close()


def upstream_error(response: requests.Response) -> dict:
    """The upstream's own error (OpenAI's and Anthropic's shapes): its message, and its type,
    code and param when it sent them; the body or the reason when it is not JSON."""
    try:
        text = response.text[:2000]
    except requests.RequestException:
        return {"message": response.reason or "no body"}
    try:  # bounded_json: a lone surrogate escape is read as U+FFFD, which every encoder takes
        error = bounded_json.loads(text.encode(), max_depth=32).get("error")
    except (ValueError, AttributeError, InvalidRequest):
        return {"message": text.strip() or response.reason or "no body"}
    if not isinstance(error, dict):
        return {"message": str(error or text)}
    found = {
        key: error[key]
        for key in ("type", "code", "param")
        if isinstance(error.get(key), str) or (key == "code" and isinstance(error.get(key), int))
    }
    return {"message": str(error.get("message") or text), **found}


def _reason(exc):
    text = str(exc)
    return text if len(text) < 300 else text[:300] + "..."


def iter_blocks(response: requests.Response, quiet_s: float, timeout_s: float) -> Iterator[bytes]:
    """Yield the body of a streamed response in blocks as they arrive (reads that queued up
    while the reader was busy go out joined), and QUIET after each ``quiet_s`` without a byte,
    so the reader can send a keep-alive. ``timeout_s`` of silence in all is a TimeoutError.

    urllib3's public ``read1`` reads (and undoes the framing and any compression) in a pump
    greenlet, a thread when gevent has not patched the process: a socket timeout would leave
    http.client's response unreadable after the first quiet interval. Measured against reading
    the socket directly under http.client, the pump costs the gateway no more (bench/ab.py)."""
    # Bounded: a client slower than its upstream holds the pump back instead of letting the
    # body pile up in memory (at most MAX_QUEUED_BLOCKS reads of 64 KB wait for the reader).
    raw, blocks, ended, stopped = response.raw, _bounded_queue(MAX_QUEUED_BLOCKS), [], []

    def pump():
        try:
            while not stopped:
                block = raw.read1(65536, decode_content=True)
                if not block:
                    ended.append(True)  # before the reader can see the end
                blocks.put(block)
                if not block:
                    return
        except BaseException as exc:  # noqa: BLE001  (the reader raises it)
            ended.append(True)
            blocks.put(exc)

    pumping = _spawn(pump)
    wait_s, silent_s, pending = min(quiet_s, timeout_s), 0.0, None
    try:
        while True:
            if pending is None:
                try:
                    block = blocks.get(timeout=wait_s)
                except queue.Empty:
                    silent_s += wait_s
                    if silent_s >= timeout_s:
                        raise TimeoutError(f"the upstream sent nothing for {timeout_s:g} s") from None
                    yield QUIET
                    continue
            else:
                block, pending = pending, None
            silent_s = 0.0
            if isinstance(block, ReadTimeoutError):  # the socket's own timeout is timeout_s too
                raise TimeoutError(f"the upstream sent nothing for {timeout_s:g} s") from None
            if isinstance(block, BaseException):
                raise block
            if not block:
                return
            parts, joined = [block], len(block)
            while joined < YIELD_EVERY_BYTES and not blocks.empty():
                more = blocks.get()
                if isinstance(more, BaseException) or not more:
                    pending = more
                    break
                parts.append(more)
                joined += len(more)
            yield parts[0] if len(parts) == 1 else b"".join(parts)
    finally:
        # Left mid-body (the client went away, a timeout, an event too large): wake the pump from
        # its read or its wait for room, and let it leave the response before the caller closes
        # it under it.
        stopped.append(True)
        if not ended:
            with suppress(OSError, AttributeError):
                raw.connection.sock.shutdown(socket.SHUT_RDWR)
        with suppress(queue.Empty):
            while True:
                blocks.get_nowait()
        if not ended:
            pumping.join(5)


def _compact(data: bytes) -> bytes:
    """``data`` in an allocation of its own size: orjson's output of a small value sits in one of
    4 KB, which the request (and so an open stream) keeps as long as it lasts."""
    return bytes(memoryview(data)) if len(data) < 4096 else data


def _bounded_queue(size: int) -> queue.Queue:
    """A queue of ``size`` between the pump and the reader: gevent's own in a gevent worker (its
    standard-library one, built on patched locks, costs 3 KB more per open stream)."""
    if monkey.is_module_patched("socket"):
        return gevent.queue.Queue(size)
    return queue.Queue(maxsize=size)


def _spawn(function):
    """Run ``function`` beside the caller: a greenlet in a gevent worker, else a thread."""
    if monkey.is_module_patched("socket"):
        return gevent.spawn(function)
    thread = threading.Thread(target=function, name="lunos-stream-pump", daemon=True)
    thread.start()
    return thread


# The largest SSE event accepted from an upstream: far above any real chunk. Past it the attempt
# fails (a provider that sends one would send it again: not retryable).
MAX_EVENT_BYTES = 8 * 1024 * 1024
# A worker that parses this much without waiting lets its other greenlets run.
YIELD_EVERY_BYTES = 1024 * 1024
# Reads of a stream that may wait for its reader (of at most 64 KB each).
MAX_QUEUED_BLOCKS = 16


def iter_sse(
    response: requests.Response, quiet_s: float, timeout_s: float, max_event_bytes: int = MAX_EVENT_BYTES
) -> Iterator[list[tuple[str | None, bytes]] | object]:
    """Yield, per block read, the list of (event, data) pairs it completed; QUIET passes through.

    Linear in the body: each block is searched for line ends once, and a line that spans blocks
    is kept in pieces until it ends. An event (its data lines, or one line not ended yet) over
    ``max_event_bytes`` is a ProviderError."""
    partial, partial_size = [], 0  # the line not ended yet, in pieces
    event, data, data_size = None, [], 0
    unyielded = 0
    for block in iter_blocks(response, quiet_s, timeout_s):
        if block is QUIET:
            yield QUIET
            continue
        events, start = [], 0
        while (end := block.find(b"\n", start)) >= 0:
            line = block[start:end]
            start = end + 1
            if partial:
                line = b"".join([*partial, line])
                partial, partial_size = [], 0
            line = line.rstrip(b"\r")
            if not line:
                if data:
                    events.append((event, b"\n".join(data)))
                event, data, data_size = None, [], 0
            elif line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
                data_size += len(line)
                if data_size > max_event_bytes:  # an event that came whole within one block
                    raise ProviderError(f"upstream sent an event of more than {max_event_bytes} bytes")
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode(errors="replace")
        if start < len(block):
            partial.append(block[start:])
            partial_size += len(block) - start
        if data_size + partial_size > max_event_bytes:
            raise ProviderError(f"upstream sent an event of more than {max_event_bytes} bytes")
        if events:
            yield events
        unyielded += len(block)
        if unyielded >= YIELD_EVERY_BYTES:  # under gevent, a turn of the loop for other streams
            time.sleep(0)
            unyielded = 0
    if data:
        yield [(event, b"\n".join(data))]


def chunk_batches(
    response: requests.Response,
    quiet_s: float,
    timeout_s: float,
    convert: Callable[[str | None, bytes], Iterable[dict[str, Any]]],
) -> Iterator[list[dict[str, Any]] | object]:
    """Per read of a streamed SSE response, the chunks ``convert(event, data)`` makes of its
    events (an iterable per event), as a list; QUIET passes through."""
    for events in iter_sse(response, quiet_s, timeout_s):
        if events is QUIET:
            yield QUIET
            continue
        chunks = [chunk for event, data in events for chunk in convert(event, data)]
        if chunks:
            yield chunks
