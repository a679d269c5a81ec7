"""The `allowedOrigins` of a mode: the entries' syntax and how a browser's `Origin` matches them.

Entries: `scheme://host[:port]` with `http` or `https`, a host that may start with `*.` (any
subdomain, never the bare domain), and a port that may be `*` (any port). Matching is exact on
scheme, host and port: `https://shop.example.com.evil.example` never matches
`https://shop.example.com`. The CORS decision that uses them is `app.cors`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_ORIGINS = 50
DEFAULT_ALLOWED_ORIGINS = {"test": ["http://localhost:*", "http://127.0.0.1:*"], "live": []}
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class OriginPattern:
    scheme: str
    host: str  # lower case; "*.example.com" for a subdomain wildcard
    port: int | None  # None: any port

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if scheme != self.scheme or (self.port is not None and port != self.port):
            return False
        if self.host.startswith("*."):
            suffix = self.host[1:]  # ".example.com"
            return host.endswith(suffix) and len(host) > len(suffix)
        return host == self.host


def parse_origin_pattern(value: str) -> OriginPattern:
    """An `allowedOrigins` entry, or ValueError saying what is wrong with it."""
    if not isinstance(value, str) or value != value.strip() or not value:
        raise ValueError("Must be an origin such as https://shop.example.com.")
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in DEFAULT_PORTS:
        raise ValueError("Must start with http:// or https://.")
    if any(c in rest for c in "/?#@\\ ") or not rest:
        raise ValueError("An origin has no path, query, fragment or user name.")
    host, colon, port_text = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
    if colon and not (port_text == "*" or (port_text.isdigit() and 0 < int(port_text) < 65536)):
        raise ValueError("The port must be a number or *.")
    if colon and port_text != "*" and port_text != str(int(port_text)):
        raise ValueError("The port must be a number or *.")
    host = host.lower()
    labels = host[2:].split(".") if host.startswith("*.") else host.split(".")
    if host.startswith("*.") and len(labels) < 2:
        raise ValueError("A wildcard covers subdomains of a domain: https://*.example.com.")
    if not all(label and all(c.isalnum() or c == "-" for c in label) and label.isascii() for label in labels):
        raise ValueError("The host must be a domain name or an IPv4 address, or *. and a domain.")
    port = None if port_text == "*" else int(port_text) if colon else DEFAULT_PORTS[scheme]
    return OriginPattern(scheme, host, port)


def origin_allowed(origin: str, patterns: list[str]) -> bool:
    parts = urlsplit(origin)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return False
    if not parts.hostname or port is None or parts.path or parts.query or parts.username:
        return False
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    for entry in patterns:
        try:
            if parse_origin_pattern(entry).matches(scheme, host, port):
                return True
        except ValueError:
            continue
    return False
