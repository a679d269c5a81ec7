"""Webhook endpoints: URLs we may call (SSRF rules), secrets (shown once, sealed at rest), rotation.

SSRF rules: a live endpoint is `https` and every address its host resolves to is a public one
(no loopback, private, link-local, shared, multicast or reserved address, however it is
written: an IPv4 address inside a mapped, 6to4, Teredo or NAT64 IPv6 address is judged as
itself, and site-local `fec0::/10` is refused, whatever Python's `ipaddress` thinks of them in
its version). A test endpoint follows the same rules unless the operator allows private
targets (`WEBHOOK_PRIVATE_TARGETS`, a developer's machine): then it may also use `http` and
loopback (the developer's own machine), never the rest (no LAN, never link-local: cloud metadata
lives there). The same check runs
when the endpoint is created and again at each delivery, and the delivery connects to the very
address that was checked (no second lookup a rebinding DNS server could answer differently).
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from app.models import WebhookEndpoint, WebhookSubscription, new_id
from app.security.crypto import WEBHOOK_SECRET_SEAL, Sealer

SECRET_PREFIX = "whsec_"


class UrlRefused(ValueError):
    """The URL may not be called (scheme, host or address); the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    address: str  # the checked address to connect to


_SITE_LOCAL = ipaddress.ip_network("fec0::/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _carried_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo client, NAT64)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in network for network in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _allowed(address: str, private_ok: bool) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _SITE_LOCAL:
            return False
        carried = _carried_ipv4(ip)
        if carried is not None:  # never this host, even in test mode: judged as a remote IPv4
            return carried.is_global and not (carried.is_reserved or carried.is_loopback or carried.is_private
                                              or carried.is_link_local or carried.is_multicast)
    if ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return False
    if ip.is_loopback:
        return private_ok
    return ip.is_global and not ip.is_reserved and not ip.is_loopback and not ip.is_private


def resolve(url: str, mode: str, private_ok: bool = False) -> Target:
    """Check a URL against the SSRF rules and return the address to connect to. `private_ok`
    (test mode, when the operator allows it) also admits `http` and loopback.

    Raises UrlRefused when the scheme is not allowed in this mode, the host does not resolve,
    or any address it resolves to is not allowed."""
    private_ok = private_ok and mode == "test"
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018 - parses the host (a broken IPv6 literal raises here)
    except ValueError:
        raise UrlRefused("The URL cannot be parsed.") from None
    allowed_schemes = ("https", "http") if private_ok else ("https",)
    if parts.scheme not in allowed_schemes:
        raise UrlRefused("Use an http(s) URL." if private_ok else
                         f"{mode.capitalize()}-mode endpoints must use https.")
    if not parts.hostname or parts.username or parts.password:
        raise UrlRefused("The URL needs a host and no user information.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UrlRefused("The port is not valid.") from None
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UrlRefused("The host does not resolve.") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    if not addresses:
        raise UrlRefused("The host does not resolve.")
    if not all(_allowed(address, private_ok) for address in addresses):
        raise UrlRefused("The host resolves to a private, link-local or reserved address." if private_ok else
                         "The host resolves to a loopback, private, link-local or reserved address.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port, path, addresses[0])


def url_for_audit(url: str) -> str:
    """A webhook URL as audit details show it: without its query and fragment (receivers put
    tokens there)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def new_secret() -> str:
    """`whsec_` + base64 of 32 random bytes (the Standard Webhooks secret format)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sealer(app_secret: str, fallbacks: Sequence[str] = ()) -> Sealer:
    return Sealer(app_secret, WEBHOOK_SECRET_SEAL, fallbacks)


def signing_secrets(endpoint: WebhookEndpoint, app_secret: str, now: datetime,
                    fallbacks: Sequence[str] = ()) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one during a rotation."""
    box = sealer(app_secret, fallbacks)
    found = [box.open(endpoint.secret_sealed, endpoint.id).decode()]
    previous, until = endpoint.previous_secret_sealed, endpoint.previous_expires_at
    if previous is not None and until is not None and until > now:
        found.append(box.open(previous, endpoint.id).decode())
    return found


def create_endpoint(session: Session, app_secret: str, organization_id: str, mode: str, url: str,
                    events: list[str], description: str | None, now: datetime) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (returned this once; stored sealed)."""
    endpoint_id = new_id("we")
    secret = new_secret()
    endpoint = WebhookEndpoint(id=endpoint_id, organization_id=organization_id, mode=mode, url=url,
                               events=sorted(set(events)), description=description,
                               secret_sealed=sealer(app_secret).seal(secret.encode(), endpoint_id), created_at=now)
    session.add(endpoint)
    session.flush()
    session.execute(insert(WebhookSubscription), [
        {"endpoint_id": endpoint_id, "event_type": event_type, "organization_id": organization_id, "mode": mode}
        for event_type in endpoint.events])
    return endpoint, secret


def rotate_secret(endpoint: WebhookEndpoint, app_secret: str, expires_in: int, now: datetime) -> str:
    """A new current secret; the old one keeps signing (beside it) for `expires_in` seconds."""
    secret = new_secret()
    endpoint.previous_secret_sealed = endpoint.secret_sealed if expires_in > 0 else None
    endpoint.previous_expires_at = now + timedelta(seconds=expires_in) if expires_in > 0 else None
    endpoint.secret_sealed = sealer(app_secret).seal(secret.encode(), endpoint.id)
    return secret


def delete_endpoint(session: Session, endpoint: WebhookEndpoint) -> None:
    """Gone with its subscriptions and deliveries (pending ones are then dropped by the job)."""
    session.execute(delete(WebhookSubscription).where(WebhookSubscription.endpoint_id == endpoint.id))
    session.delete(endpoint)
