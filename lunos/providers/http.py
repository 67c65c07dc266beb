"""The one pooled HTTP client every provider shares, and its mapping of failures."""
import json
import os
from urllib.parse import urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

from lunos import __version__
from lunos.providers.base import ProviderError, parse_retry_after

USER_AGENT = f"lunos/{__version__}"


class UpstreamHTTP:
    """One pooled requests transport for every provider.

    Requests go straight to the HTTPAdapter: a Session would merge cookies, hooks and the proxy
    and CA environment on every call, most of requests' per-call cost, and none of it applies
    to upstream APIs. The environment is read once instead: proxies per upstream host
    (HTTPS_PROXY, NO_PROXY), the CA bundle at start.
    """

    def __init__(self, pool_size, connect_timeout_s):
        self.connect_timeout_s = connect_timeout_s
        self.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._proxies = {}
        # Retries belong to the router (it knows about fallbacks), so urllib3 does none.
        self.adapter = HTTPAdapter(pool_connections=16, pool_maxsize=pool_size, max_retries=0)

    def post_json(self, url, body, *, headers, timeout_s, stream=False):
        """POST ``body``; return the response when 2xx, raise ProviderError otherwise.

        ``timeout_s`` bounds every wait for bytes, so on a stream it is the longest silence.
        """
        request = requests.PreparedRequest()
        request.prepare(method="POST", url=url, headers={"User-Agent": USER_AGENT, **headers},
                        data=orjson.dumps(body))
        try:
            response = self.adapter.send(request, stream=stream, verify=self.verify,
                                         proxies=self._proxies_for(url),
                                         timeout=(self.connect_timeout_s, timeout_s))
        except requests.Timeout as exc:
            raise ProviderError(f"timed out: {exc.__class__.__name__}", retryable=True,
                                timed_out=True) from None
        except requests.RequestException as exc:
            raise ProviderError(f"connection failed: {_reason(exc)}", retryable=True) from None
        if response.status_code >= 400:
            try:
                message = error_message(response)
            finally:
                response.close()
            raise ProviderError.from_status(response.status_code, message,
                                            parse_retry_after(response.headers.get("Retry-After")))
        return response

    def _proxies_for(self, url):
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._proxies:
            self._proxies[origin] = get_environ_proxies(origin)  # honours HTTPS_PROXY and NO_PROXY
        return self._proxies[origin]

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


def error_message(response):
    """The upstream's own error text when it sent one (OpenAI and Anthropic shapes), else the body."""
    try:
        text = response.text[:2000]
    except requests.RequestException:
        return response.reason or "no body"
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return text.strip() or response.reason or "no body"
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(error or text)


def _reason(exc):
    text = str(exc)
    return text if len(text) < 300 else text[:300] + "..."


def iter_blocks(response):
    """Yield the body of a streamed response in blocks as they arrive: whatever is available at
    each read (several events at once when they queued up), never waiting to fill a buffer."""
    raw = response.raw
    while block := raw.read1(65536):
        yield block


def iter_sse(response):
    """Yield (event, data) pairs from a text/event-stream response as they arrive."""
    buffer, event, data = b"", None, []
    for block in iter_blocks(response):
        buffer += block
        *lines, buffer = buffer.split(b"\n")
        for raw_line in lines:
            line = raw_line.rstrip(b"\r")
            if not line:
                if data:
                    yield event, b"\n".join(data)
                event, data = None, []
            elif line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode()
    if data:
        yield event, b"\n".join(data)
