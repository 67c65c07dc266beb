"""The one pooled HTTP client every provider shares, and its mapping of failures."""
import json

import requests
from requests.adapters import HTTPAdapter

from lunos.providers.base import ProviderError, parse_retry_after


class UpstreamHTTP:
    def __init__(self, pool_size, connect_timeout_s):
        self.connect_timeout_s = connect_timeout_s
        self.session = requests.Session()
        # Retries belong to the router (it knows about fallbacks), so urllib3 does none.
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def post_json(self, url, body, *, headers, timeout_s, stream=False):
        """POST ``body``; return the response when 2xx, raise ProviderError otherwise.

        ``timeout_s`` bounds every wait for bytes, so on a stream it is the longest silence.
        """
        try:
            response = self.session.post(url, json=body, headers=headers, stream=stream,
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

    def close(self):
        self.session.close()


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


def iter_sse(response):
    """Yield (event, data) pairs from a text/event-stream response as they arrive."""
    event, data = None, []
    for raw in response.iter_lines(chunk_size=None, decode_unicode=False):
        line = raw.decode("utf-8")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = None, []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field == "event":
                event = value
    if data:
        yield event, "\n".join(data)
