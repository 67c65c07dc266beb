"""Where Stripe may send a user back after Checkout or the Customer Portal.

Only to this gateway (the host and port of LUNOS_PUBLIC_URL) or to a host the operator listed in
LUNOS_BILLING_RETURN_HOSTS; otherwise a request could have Stripe send a paying user to any site.
Checked for each request's ``return_url`` and, at start-up, for LUNOS_BILLING_RETURN_URL. Plain
functions raising ValueError, so config.py can use them before the app exists.
"""

from collections.abc import Iterable
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_LENGTH = 2048


def _refuse_odd_characters(text: str) -> None:
    # Parsers disagree on these (a browser reads '\' as '/', urlsplit drops tabs): refuse them
    # rather than judge a URL differently from the browser that will follow it.
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in text):
        raise ValueError("must not contain spaces, control characters or backslashes")


def origin(url: str) -> tuple[str, int]:
    """(host, port) of an absolute http(s) URL without user info; ValueError saying why not."""
    if len(url) > MAX_LENGTH:
        raise ValueError(f"is longer than {MAX_LENGTH} characters")
    _refuse_odd_characters(url)
    parts = urlsplit(url)  # ValueError itself for a malformed IPv6 host
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError("must be an absolute http:// or https:// URL")
    if "@" in parts.netloc:
        raise ValueError("must not carry a user name or password")
    if not parts.hostname:
        raise ValueError("has no host")
    return parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme]  # .port: ValueError if out of range


def parse_public_url(text: str) -> str:
    """LUNOS_PUBLIC_URL: the gateway's base URL as browsers reach it, e.g. https://gateway.example.com."""
    origin(text)
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise ValueError("must be a base URL, without a query or fragment")
    return text.rstrip("/")


def parse_hosts(text: str) -> tuple[str, ...]:
    """LUNOS_BILLING_RETURN_HOSTS: comma-separated ``host`` or ``host:port`` entries."""
    hosts = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        _refuse_odd_characters(entry)
        parts = urlsplit("//" + entry)
        if not parts.hostname or "@" in parts.netloc or parts.path or parts.query or parts.fragment:
            raise ValueError(f"{entry!r} is not a host or host:port")
        parts.port  # noqa: B018 (ValueError when the port is not a number from 0 to 65535)
        hosts.append(entry.lower())
    return tuple(hosts)


class ReturnUrls:
    """The hosts a return URL may point to."""

    def __init__(self, public_url: str, extra_hosts: Iterable[str] = ()):
        self.public = origin(public_url)
        self.extra = set()  # (host, port); port None: the scheme's default port
        for entry in extra_hosts:
            parts = urlsplit("//" + entry)
            self.extra.add((parts.hostname, parts.port))

    def check(self, url: str) -> str:
        """The URL itself when Stripe may send users to it; ValueError saying why not."""
        host, port = origin(url)
        scheme = urlsplit(url).scheme
        if (
            (host, port) == self.public
            or (host, port) in self.extra
            or (port == DEFAULT_PORTS[scheme] and (host, None) in self.extra)
        ):
            return url
        shown = host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
        raise ValueError(
            f"points to {shown}, which is neither this gateway's public URL (LUNOS_PUBLIC_URL) "
            "nor a host in LUNOS_BILLING_RETURN_HOSTS"
        )


def from_config(config) -> ReturnUrls:
    return ReturnUrls(config["PUBLIC_URL"], config["BILLING_RETURN_HOSTS"])
