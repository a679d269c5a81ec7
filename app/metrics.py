"""Prometheus metrics (operations contract, "Observability").

Each app owns a `Metrics` (built in `create_app`, `app.extensions["usher_metrics"]`) with its own
registry, never the client library's global one, and hands it to what counts (the bot defense,
the OTP view, the webhook job). Under gunicorn, `gunicorn.conf.py` points
`PROMETHEUS_MULTIPROC_DIR` at a directory of this instance's own before any worker imports the
library, so every worker's counters land there and a scrape sums them (the library's
multiprocess mode). Gauges that describe shared state (webhook backlog, dependencies) are read
at scrape time instead, so they are the same whichever process answers.

Labels are bounded vocabularies only: the route is the URL rule (`/api/v1/queues/<queue_id>`),
never the path, and no label ever carries an id, key, email or phone number.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
security_log = logging.getLogger("usher.security")

#: The security events counted and logged (`Metrics.security_event`).
SECURITY_EVENTS = ("refresh_token_reused", "exchange_code_replayed", "audit_chain_broken")
#: The grant endpoints whose success is a sign-in, by URL rule.
SIGN_IN_ROUTES = {"/api/v1/auth/guest": "guest", "/api/v1/auth/otp/verify": "otp",
                  "/api/v1/auth/external/exchange": "external"}


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter("usher_http_requests", "HTTP requests answered, by URL rule, method and status.",
                                     ["route", "method", "status"], registry=r)
        self.http_duration = Histogram("usher_http_request_duration_seconds",
                                       "Time to answer a request, by URL rule.", ["route"], registry=r,
                                       buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.sign_ins = Counter("usher_sign_ins", "Sessions started, by grant type and mode.", ["type", "mode"],
                                registry=r)
        self.otp_messages = Counter("usher_otp_messages", "OTP messages handed to a sender, by channel and outcome "
                                    "(sent, failed).", ["channel", "outcome"], registry=r)
        self.rate_limited = Counter("usher_rate_limited", "Requests refused by a rate limit, by limit name.",
                                    ["limit"], registry=r)
        self.challenges = Counter("usher_challenges", "Bot-defense challenges checked, by provider and outcome.",
                                  ["provider", "outcome"], registry=r)
        self.webhook_deliveries = Counter("usher_webhook_deliveries", "Webhook delivery attempts, by outcome "
                                          "(succeeded, retrying, failed).", ["outcome"], registry=r)
        self.security_events = Counter("usher_security_events", "Theft signals and integrity breaks, by type.",
                                       ["type"], registry=r)

    def count_otp_message(self, channel: str, outcome: str) -> None:
        self.otp_messages.labels(channel, outcome).inc()

    def count_webhook_delivery(self, outcome: str) -> None:
        self.webhook_deliveries.labels(outcome).inc()

    def count_challenge(self, provider: str, outcome: str) -> None:
        """For the bot-defense checks: `provider` is the configured provider's name, `outcome` one of
        a fixed few (issued, passed, refused, unavailable)."""
        self.challenges.labels(provider, outcome).inc()

    def security_event(self, event_type: str, **context: str | None) -> None:
        """Count a security event and log it as one WARNING line (ids only, never a credential)."""
        self.security_events.labels(event_type).inc()
        details = " ".join(f"{name}={value}" for name, value in context.items() if value is not None)
        security_log.warning("security event %s %s", event_type, details)

    def observe_request(self, route: str, method: str, status: int, seconds: float, mode: str | None) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_duration.labels(route).observe(seconds)
        if status in (200, 201) and route in SIGN_IN_ROUTES and mode is not None:
            self.sign_ins.labels(SIGN_IN_ROUTES[route], mode).inc()

    def render(self, shared: Collector | None = None) -> bytes:
        """The exposition text: every worker's counters (multiprocess mode) or this process's,
        plus the gauges read now."""
        registry = CollectorRegistry()
        if multiprocess_dir():
            MultiProcessCollector(registry)
        else:
            registry.register(_Forward(self.registry))
        if shared is not None:
            registry.register(shared)
        return generate_latest(registry)


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


class SharedState(Collector):
    """Gauges read at scrape time: the webhook backlog and whether each dependency answers."""

    def __init__(self, engine_of: Callable, limits_ping: Callable[[], bool] | None, broker_url: str | None):
        self.engine_of, self.limits_ping, self.broker_url = engine_of, limits_ping, broker_url

    def collect(self) -> Iterable[Metric]:
        from app.models import WebhookDelivery

        up = GaugeMetricFamily("usher_dependency_up", "1 when the dependency answers, else 0.",
                               labels=["dependency"])
        pending = GaugeMetricFamily("usher_webhook_pending", "Webhook deliveries waiting to be made.")
        oldest = GaugeMetricFamily("usher_webhook_oldest_pending_age_seconds",
                                   "Age of the oldest waiting webhook delivery (0 when none).")
        try:
            deliveries = WebhookDelivery.__table__
            with self.engine_of().connect() as connection:
                connection.execute(text("SELECT 1"))
                count, first = connection.execute(select(func.count(), func.min(deliveries.c.created_at))
                                                  .where(deliveries.c.status == "pending")).one()
            up.add_metric(["database"], 1)
            pending.add_metric([], count)
            if first is not None and first.tzinfo is None:
                first = first.replace(tzinfo=UTC)
            oldest.add_metric([], (datetime.now(UTC) - first).total_seconds() if first else 0)
            yield pending
            yield oldest
        except Exception:  # noqa: BLE001 - any failure: the database is down for this scrape
            up.add_metric(["database"], 0)
        if self.limits_ping is not None:
            up.add_metric(["limits"], 1 if self.limits_ping() else 0)
        if self.broker_url:
            up.add_metric(["job_broker"], 1 if _redis_answers(self.broker_url) else 0)
        yield up


def _redis_answers(url: str) -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except Exception:  # noqa: BLE001 - any failure means down
        return False


def is_loopback_direct(environ: dict) -> bool:
    """Whether the request comes straight from this host: a loopback peer that forwards nobody
    (a request carrying X-Forwarded-For/Forwarded came through a proxy, and the proxy's own
    loopback address says nothing about the client)."""
    original = environ.get("werkzeug.proxy_fix.orig", {})
    peer = original.get("REMOTE_ADDR") or environ.get("REMOTE_ADDR") or ""
    if any(name in environ for name in ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")):
        return False
    try:
        return ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


def serve_metrics_wsgi(render: Callable[[], bytes]) -> Callable[..., Iterable[bytes]]:
    """A WSGI app that answers GET /metrics (and 404 otherwise): the METRICS_BIND listener."""
    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO") != "/metrics" or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        body = render()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
        return [body]
    return application
