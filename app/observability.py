"""Request ids and the access log: one line per request, never a credential.

The line carries method, path (never the query string), status, duration, request id and
organization; control characters of the client's text (`%0a` in a path) are escaped, so
one request is always one line (`printable`). `X-Request-Id` is taken from the caller when it
is a sane token, else made here; it is echoed on every response and added as `requestId` to
every JSON error body.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import TYPE_CHECKING

from flask import Flask, current_app, g, request

if TYPE_CHECKING:
    from app.metrics import Metrics

log = logging.getLogger("usher.access")
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\\]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def printable(text: str) -> str:
    """Client-supplied text for a log line: control characters (and line separators) escaped as
    `\\n`, `\\x1b`, `\\u2028`, a backslash doubled, so no input can start a line of its own."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group()) or (f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                                          else f"\\u{ord(m.group()):04x}"), text)


def register_metrics(app: Flask, metrics: Metrics) -> None:
    """GET /metrics on the main port: only with METRICS_BIND unset, and only to a loopback peer
    that forwards nobody (see `app.metrics.is_loopback_direct`); anyone else gets the JSON 404
    of a route that does not exist."""
    from app.errors import ApiError
    from app.metrics import CONTENT_TYPE, SharedState, is_loopback_direct

    usher = app.extensions["usher"]
    usher.limits.refused = lambda name: metrics.rate_limited.labels(name).inc()
    shared = SharedState(lambda: usher.db.engine, usher.limits.ping, usher.settings.job_broker_url)

    def metrics_view():
        if usher.settings.metrics_bind or not is_loopback_direct(request.environ):
            raise ApiError("not_found")
        return app.response_class(metrics.render(shared), mimetype=None, content_type=CONTENT_TYPE)

    app.add_url_rule("/metrics", "usher_metrics", metrics_view, methods=["GET"])


def register_observability(app: Flask) -> None:
    @app.before_request
    def _start():
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if SANE_ID.fullmatch(incoming) else uuid.uuid4().hex
        g.request_started = time.perf_counter()

    @app.after_request
    def _finish(response):
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-Id"] = request_id
        if response.status_code >= 400 and response.mimetype == "application/json" and not response.direct_passthrough:
            try:
                body = json.loads(response.get_data())
            except ValueError:
                body = None
            if isinstance(body, dict) and "requestId" not in body:
                body["requestId"] = request_id
                response.set_data(json.dumps(body))
        started = g.get("request_started")
        duration_ms = (time.perf_counter() - started) * 1000 if started else 0.0
        ctx = g.get("usher_ctx")
        metrics = current_app.extensions.get("usher_metrics")
        if metrics is not None and request.endpoint != "usher_metrics":
            rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
            metrics.observe_request(rule, request.method, response.status_code, duration_ms / 1000,
                                    ctx.mode if ctx else None)
        log.info("%s %s %s %.1fms request_id=%s org=%s", printable(request.method), printable(request.path),
                 response.status_code, duration_ms, request_id, ctx.organization_id if ctx else "-")
        return response
