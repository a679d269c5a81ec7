"""The client address of the request, as the rate limits key it (`app.ratelimit` never reads the request)."""

from __future__ import annotations

from flask import request

from app.ratelimit import address_key


def client_ip() -> str:
    """The client address after ProxyFix: only trusted hops' X-Forwarded-For is believed."""
    return request.remote_addr or "unknown"


def client_key(address: str | None = None) -> str:
    """The limit key of the request's client address, or of `address` (see `address_key`)."""
    return address_key(client_ip() if address is None else address)
