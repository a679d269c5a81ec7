"""The webhook delivery job: claim the delivery, sign (Standard Webhooks), POST, record the attempt.

One attempt per run. A failed attempt (non-2xx, no answer in `WEBHOOK_TIMEOUT_SECONDS`, an
address the SSRF rules refuse) is recorded and handed back to Dramatiq's Retries middleware with
the contract's delay (`dramatiq.Retry(delay=…)`); after the last one the delivery is `failed`.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import dramatiq
from flask import Flask
from sqlalchemy import and_, bindparam, or_, select, update
from standardwebhooks.webhooks import Webhook

from app.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from app.services.webhooks import Target, UrlRefused, resolve, signing_secrets

log = logging.getLogger("usher.webhooks")

# Seconds before retry n (the contract: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h), then `failed`.
RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000)
STRANDED_AFTER = timedelta(minutes=2)  # due this long ago and still pending: no message carries it

_DELIVERIES = WebhookDelivery.__table__
_D = _DELIVERIES.c
_KEY = and_(_D.endpoint_id == bindparam("k_endpoint"), _D.event_id == bindparam("k_event"))
# The claim: only one worker at a time attempts a delivery; the lease outlives the HTTP timeout.
_CLAIM = (update(_DELIVERIES).where(_KEY, _D.status == "pending",
                                    or_(_D.next_attempt_at.is_(None), _D.next_attempt_at <= bindparam("now")))
          .values(next_attempt_at=bindparam("lease")))
_RECORD = (update(_DELIVERIES).where(_KEY).values(
    status=bindparam("new_status"), attempts=_D.attempts + 1, last_response_status=bindparam("response_status"),
    last_error=bindparam("error"), last_attempt_at=bindparam("now"), next_attempt_at=bindparam("next_at")))


def retry_schedule(config: Mapping[str, Any]) -> tuple[float, ...]:
    """The backoff in seconds; `WEBHOOK_RETRY_SCHEDULE` replaces it only in tests that must not wait hours."""
    return tuple(config.get("WEBHOOK_RETRY_SCHEDULE") or RETRY_SCHEDULE)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that passed the SSRF check, never to a fresh DNS answer."""

    def __init__(self, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self.pinned_address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.pinned_address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """The same over TLS, the certificate checked against the URL's host name."""

    def __init__(self, target: Target, timeout: float, ca_file: str | None = None):
        self.tls = ssl.create_default_context(cafile=ca_file)
        super().__init__(target.host, target.port, timeout=timeout, context=self.tls)
        self.pinned_address = target.address

    def connect(self) -> None:
        sock = socket.create_connection((self.pinned_address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def post(target: Target, body: bytes, headers: dict, timeout: float, ca_file: str | None = None) -> int:
    """One POST; the status code (redirects are not followed: a 3xx is just not a 2xx)."""
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = _PinnedHTTPSConnection(target, timeout, ca_file)
    else:
        connection = _PinnedHTTPConnection(target, timeout)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(65536)
        return response.status
    finally:
        connection.close()


def sign(secrets: list[str], msg_id: str, at: datetime, body: str) -> str:
    """`v1,<sig>` for each secret, space-separated (Standard Webhooks), by the reference library."""
    return " ".join(Webhook(secret).sign(msg_id, at, body) for secret in secrets)


def deliver(app: Flask, endpoint_id: str, event_id: str) -> None:
    """One attempt of one delivery (the job)."""
    usher = app.extensions["usher"]
    db, settings, clock = usher.db, usher.settings, usher.clock
    schedule = retry_schedule(app.config)
    now = clock()
    timeout = settings.webhook_timeout_seconds
    with db.transaction() as session:
        claimed = session.execute(_CLAIM, {"k_endpoint": endpoint_id, "k_event": event_id, "now": now,
                                           "lease": now + timedelta(seconds=timeout + 5)}).rowcount
        if not claimed:
            delivery = session.get(WebhookDelivery, (endpoint_id, event_id))
            if delivery is None or delivery.status != "pending":
                return  # done, failed, or gone (its endpoint was deleted, or its transaction rolled back)
            due = delivery.next_attempt_at or now
            wait = max(1000, int((due - now).total_seconds() * 1000))
            raise dramatiq.Retry("not due yet, or another worker holds it", delay=wait)
        attempt = session.get(WebhookDelivery, (endpoint_id, event_id)).attempts + 1
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        event = session.get(WebhookEvent, event_id)
        secrets = signing_secrets(endpoint, settings.app_secret, now, settings.app_secret_fallbacks)
    response_status, error = None, None
    try:
        target = resolve(endpoint.url, endpoint.mode,  # again at each delivery (DNS rebinding)
                         settings.private_webhook_targets_allowed)
        headers = {"Content-Type": "application/json", "User-Agent": "Usher-Webhooks",
                   "webhook-id": event.id, "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": sign(secrets, event.id, now, event.body)}
        response_status = post(target, event.body.encode(), headers, timeout, settings.webhook_ca_file)
    except UrlRefused as exc:
        error = f"refused: {exc}"
    except (OSError, http.client.HTTPException) as exc:
        error = "timeout" if isinstance(exc, TimeoutError | socket.timeout) else f"connection: {type(exc).__name__}"
    succeeded = response_status is not None and 200 <= response_status < 300
    done = clock()
    if succeeded:
        status, next_at = "succeeded", None
    elif attempt > len(schedule):
        status, next_at = "failed", None
    else:
        status, next_at = "pending", done + timedelta(seconds=schedule[attempt - 1])
    if error is None and not succeeded:
        error = f"HTTP {response_status}"
    with db.transaction() as session:
        session.execute(_RECORD, {"k_endpoint": endpoint_id, "k_event": event_id, "new_status": status,
                                  "response_status": response_status, "error": error and error[:200], "now": done,
                                  "next_at": next_at})
    metrics = app.extensions.get("usher_metrics")
    if metrics is not None:
        metrics.count_webhook_delivery("retrying" if status == "pending" else status)
    if succeeded:
        log.info("webhook %s to %s: attempt %d succeeded", event_id, endpoint_id, attempt)
    else:
        log.warning("webhook %s to %s: attempt %d %s: %s", event_id, endpoint_id, attempt,
                    "will be retried" if status == "pending" else "failed for good", error)
    if status == "pending":
        raise dramatiq.Retry(f"attempt {attempt} failed ({error})", delay=int(schedule[attempt - 1] * 1000))


def stranded(app: Flask, limit: int = 500) -> list[tuple[str, str]]:
    """Pending deliveries due for longer than a message could take to arrive (see `Jobs.sweep`)."""
    usher = app.extensions["usher"]
    before = usher.clock() - STRANDED_AFTER
    with usher.db.transaction() as session:
        rows = session.execute(select(_D.endpoint_id, _D.event_id).where(
            _D.status == "pending", _D.next_attempt_at <= before).limit(limit)).all()
    return [(row.endpoint_id, row.event_id) for row in rows]
