"""The one pooled HTTP client every provider shares, and its mapping of failures."""
import json
import os

import orjson
import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity, get_environ_proxies
from urllib3.exceptions import ProtocolError

from lunos import __version__
from lunos.providers.base import QUIET, ProviderError, parse_retry_after

USER_AGENT = f"lunos/{__version__}"


class UpstreamHTTP:
    """One pooled requests transport for every provider.

    Requests go straight to the HTTPAdapter: a Session would merge cookies, hooks and the proxy
    and CA environment on every call, most of requests' per-call cost, and none of it applies
    to upstream APIs. The environment is read once instead: proxies per upstream host
    (HTTPS_PROXY, NO_PROXY), the CA bundle at start.
    """

    def __init__(self, pool_size, connect_timeout_s, quiet_s=15.0):
        self.connect_timeout_s = connect_timeout_s
        self.quiet_s = quiet_s  # streams report each quiet interval, for keep-alive comments
        self.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._targets = {}
        # Retries belong to the router (it knows about fallbacks), so urllib3 does none.
        self.adapter = HTTPAdapter(pool_connections=16, pool_maxsize=pool_size, max_retries=0)

    def post_json(self, url, body, *, headers, timeout_s, stream=False):
        """POST ``body``; return the response when 2xx, raise ProviderError otherwise.

        ``timeout_s`` bounds every wait for bytes, so on a stream it is the longest silence.
        """
        try:
            request, proxies = self._prepare(url, headers, orjson.dumps(body))
            response = self.adapter.send(request, stream=stream, verify=self.verify, proxies=proxies,
                                         timeout=(self.connect_timeout_s, timeout_s))
        except requests.Timeout as exc:
            raise ProviderError(f"timed out: {exc.__class__.__name__}", retryable=True,
                                timed_out=True) from None
        except requests.RequestException as exc:
            raise ProviderError(f"connection failed: {_reason(exc)}", retryable=True) from None
        if response.status_code >= 400:
            try:
                upstream = upstream_error(response)
            finally:
                response.close()
            raise ProviderError.from_status(response.status_code, upstream,
                                            parse_retry_after(response.headers.get("Retry-After")))
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

    def close(self):
        self.adapter.close()


def read_json(response):
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


def upstream_error(response) -> dict:
    """The upstream's own error (OpenAI's and Anthropic's shapes): its message, and its type,
    code and param when it sent them; the body or the reason when it is not JSON."""
    try:
        text = response.text[:2000]
    except requests.RequestException:
        return {"message": response.reason or "no body"}
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return {"message": text.strip() or response.reason or "no body"}
    if not isinstance(error, dict):
        return {"message": str(error or text)}
    found = {key: error[key] for key in ("type", "code", "param")
             if isinstance(error.get(key), str) or (key == "code" and isinstance(error.get(key), int))}
    return {"message": str(error.get("message") or text), **found}


def _reason(exc):
    text = str(exc)
    return text if len(text) < 300 else text[:300] + "..."


def iter_blocks(response, quiet_s, timeout_s):
    """Yield the body of a streamed response in blocks as they arrive (whatever each read finds:
    several events when they queued up), and QUIET after each ``quiet_s`` without a byte, so the
    reader can send a keep-alive without a second greenlet. ``timeout_s`` of silence in all is
    a TimeoutError.

    The framing is undone here, on the buffered socket: urllib3 and http.client turn a socket
    timeout into a dead response, and cost several calls per layer for each event.
    """
    raw = response.raw
    source = getattr(raw, "_fp", None)  # http.client's response, under urllib3's
    reader = getattr(source, "fp", None)
    if reader is None or source.chunk_left is not None or response.headers.get("Content-Encoding"):
        # A compressed body (Lunos asks for identity, but a proxy may compress it anyway), or one
        # urllib3 has begun reading: urllib3 reads and decodes it, without quiet intervals.
        yield from iter(lambda: raw.read1(65536, decode_content=True), b"")
        return
    wait_s = min(quiet_s, timeout_s)
    raw.connection.sock.settimeout(wait_s)
    blocks = _reads(reader, wait_s, timeout_s)
    yield from _dechunk(blocks) if source.chunked else _sized(blocks, source.length)
    if not source.will_close:  # read to its end: the connection goes back to the pool
        source.close()
        raw.release_conn()


def _reads(reader, wait_s, timeout_s):
    """Reads from ``reader``, a buffered socket whose timeout is ``wait_s``: bytes as they come
    (b"" at the end), or QUIET for each ``wait_s`` without any."""
    silent_s = 0.0
    while True:
        try:
            data = reader.read1(65536)  # what is buffered, else one read from the socket
        except TimeoutError:
            # socket.SocketIO refuses to read after a timeout, lest a partial read be lost;
            # read1 consumed nothing here, so reading on is safe.
            reader.raw._timeout_occurred = False
            silent_s += wait_s
            if silent_s >= timeout_s:
                raise
            yield QUIET
            continue
        silent_s = 0.0
        yield data


def _dechunk(blocks):
    """The data of a chunked body, from its raw ``blocks``; QUIET passes through."""
    buffer, state, left = b"", "size", 0
    for block in blocks:
        if block is QUIET:
            yield QUIET
            continue
        if not block:
            if state == "trailer":
                return  # some servers close instead of ending an empty trailer
            raise ProtocolError("the upstream closed the connection inside a chunked body")
        buffer += block
        parts = []
        while True:
            if state == "size":
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > 1024:
                        raise ProtocolError("invalid chunk size line")
                    break
                left = _chunk_size(buffer[:end])
                buffer = buffer[end + 2:]
                state = "data" if left else "trailer"
            elif state == "data":
                if not buffer:
                    break
                part, buffer = buffer[:left], buffer[left:]
                parts.append(part)
                left -= len(part)
                if not left:
                    state = "crlf"
            elif state == "crlf":
                if len(buffer) < 2:
                    break
                if buffer[:2] != b"\r\n":
                    raise ProtocolError("a chunk did not end with CRLF")
                buffer, state = buffer[2:], "size"
            else:  # the trailer: fields, if any, then the empty line that ends the body
                if buffer.startswith(b"\r\n") or b"\r\n\r\n" in buffer:
                    if parts:
                        yield b"".join(parts)
                    return
                break
        if parts:
            yield b"".join(parts)


def _chunk_size(line):
    try:
        return int(line.split(b";", 1)[0], 16)
    except ValueError:
        raise ProtocolError(f"invalid chunk size: {line[:40]!r}") from None


def _sized(blocks, length):
    """A body of ``length`` bytes, or up to the end of the connection when None."""
    for block in blocks:
        if block is QUIET:
            yield QUIET
            continue
        if not block:
            if length:
                raise ProtocolError("the upstream closed the connection before the end of the body")
            return
        if length is not None:
            block = block[:length]
            length -= len(block)
        yield block
        if length == 0:
            return


def iter_sse(response, quiet_s, timeout_s):
    """Yield, per block read, the list of (event, data) pairs it completed; QUIET passes through."""
    buffer, event, data = b"", None, []
    for block in iter_blocks(response, quiet_s, timeout_s):
        if block is QUIET:
            yield QUIET
            continue
        buffer += block
        *lines, buffer = buffer.split(b"\n")
        events = []
        for raw_line in lines:
            line = raw_line.rstrip(b"\r")
            if not line:
                if data:
                    events.append((event, b"\n".join(data)))
                event, data = None, []
            elif line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode()
        if events:
            yield events
    if data:
        yield [(event, b"\n".join(data))]


def chunk_batches(response, quiet_s, timeout_s, convert):
    """Per read of a streamed SSE response, the chunks ``convert(event, data)`` makes of its
    events (an iterable per event), as a list; QUIET passes through."""
    for events in iter_sse(response, quiet_s, timeout_s):
        if events is QUIET:
            yield QUIET
            continue
        chunks = [chunk for event, data in events for chunk in convert(event, data)]
        if chunks:
            yield chunks
