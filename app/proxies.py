"""Who may say who the client is: `X-Forwarded-For`/`-Proto` are believed only from a direct peer
in TRUSTED_PROXIES (CIDRs), and then for TRUSTED_PROXY_COUNT hops (werkzeug's ProxyFix). From any
other peer they are ignored, so a client that reaches gunicorn directly cannot choose its own
address and dodge every per-address limit. Unset with a count above 0: loopback only (nginx on
the same host), the safest choice that keeps the single-host setup working."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

LOOPBACK = ("127.0.0.0/8", "::1/128")


def parse_networks(values: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """CIDRs (a bare address is a /32 or /128); ValueError naming the bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(value) from None
    return tuple(networks)


class TrustedProxyFix:
    """ProxyFix for requests whose direct peer is a listed proxy; the plain app for the rest."""

    def __init__(self, app: Callable[..., Iterable[bytes]], count: int, proxies: tuple[str, ...]) -> None:
        self.app = app
        self.fixed = ProxyFix(app, x_for=count, x_proto=count, x_host=0, x_port=0, x_prefix=0)
        self.networks = parse_networks(proxies or LOOPBACK)

    def trusted(self, peer: str | None) -> bool:
        try:
            address = ipaddress.ip_address((peer or "").split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.trusted(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)
