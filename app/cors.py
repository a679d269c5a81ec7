"""Browsers on a shop's own domain: CORS, and the headers every response carries.

Who does what:
- **Flask-CORS** does the mechanics: preflight answers (methods, allowed headers, max age),
  `Access-Control-Allow-Origin` echoing the origin, `Vary: Origin`, exposed headers, `*` on
  `/.well-known/*`.
- **This module** makes the one decision Flask-CORS cannot: is this origin in the caller's
  `allowedOrigins` (per organization and mode)? `check_origin` runs right after the caller is
  resolved and before the view does anything; a refused origin is 403 `origin_not_allowed` and
  nothing happened. An actual request gets CORS headers only when its origin was checked and
  allowed (also for a 401 whose publishable key allows it, so a page can refresh an expired
  token) and for the 403 `origin_not_allowed` itself (so the page can read why it was refused):
  secret-key endpoints, other answers to refused origins and unknown callers get none. A preflight
  carries no key, so on consumer routes it is answered for any origin (204).

The `allowedOrigins` entries and their matching are `app.origins` (the settings validate with it).
"""

from __future__ import annotations

import re

from flask import Flask, current_app, g, request
from flask_cors import CORS
from flask_cors.core import FLASK_CORS_EVALUATED

from app.errors import ApiError
from app.origins import origin_allowed
from app.security.credentials import CredentialKind

ALLOW_HEADERS = ["Authorization", "Content-Type", "X-Publishable-Key", "X-Request-Id", "X-Usher-Challenge"]
EXPOSE_HEADERS = ["X-Request-Id", "Retry-After"]
# Every consumer route (the admin routes that share a path answer a secret key without CORS).
CONSUMER_PATHS = r"/api/v1/(auth/.+|experiences/[^/]+|queues/[^/]+(/(enter|status|leave))?)"


def check_origin(allowed_origins: list[str] | None, credential: CredentialKind) -> None:
    """The per-tenant decision, right after the caller is resolved: a browser origin outside
    the mode's `allowedOrigins` is refused before anything is done. Secret keys are server-side:
    their answers never carry CORS headers."""
    origin = request.headers.get("Origin")
    if origin is None or credential is CredentialKind.SECRET:
        return
    if not origin_allowed(origin, allowed_origins or []):
        g.cors_origin_refused = True  # the 403 itself is readable by that origin (see `_gate`)
        raise ApiError("origin_not_allowed")
    g.cors_origin_allowed = True


def _origin_allowed_for_publishable_key() -> bool:
    """For a 401 of a consumer route (an expired or revoked access token, say): is the origin
    allowed for the publishable key sent along? Then the page can read the 401 and refresh."""
    value = request.headers.get("X-Publishable-Key")
    if not value:
        return False
    usher = current_app.extensions["usher"]
    ctx = usher.callers.resolve_key(usher.reader, value, "publishable")
    return ctx is not None and origin_allowed(request.headers["Origin"], ctx.organization.allowed_origins)


def register_cors(app: Flask) -> None:
    """Flask-CORS for the mechanics, then our gate on actual requests; `nosniff` everywhere and
    `no-store` on every API answer (tokens, key values, exchange codes and captured messages
    live there)."""

    @app.after_request  # registered before Flask-CORS, so it runs after it
    def _security_headers(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        if "Access-Control-Allow-Headers" in response.headers:  # the whole list, as documented
            response.headers["Access-Control-Allow-Headers"] = ", ".join(ALLOW_HEADERS)
        if request.path.startswith(("/api/", "/oauth/")) and "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
            response.headers["Pragma"] = "no-cache"
        return response

    CORS(app, resources={
        r"/.well-known/.*": {"origins": "*", "send_wildcard": True, "vary_header": False,
                              "methods": ["GET", "HEAD", "OPTIONS"]},
        CONSUMER_PATHS: {"origins": "*", "methods": ["GET", "HEAD", "POST", "OPTIONS"]},
    }, allow_headers=ALLOW_HEADERS, expose_headers=EXPOSE_HEADERS, max_age=600, intercept_exceptions=False,
        always_send=False)

    # Registered after Flask-CORS, so it runs before it (Flask runs these in reverse order).
    @app.after_request
    def _gate(response):
        if "Origin" not in request.headers or request.path.startswith("/.well-known/"):
            return response
        consumer_route = re.fullmatch(CONSUMER_PATHS, request.path) is not None
        if (consumer_route and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
                and response.status_code == 200):  # the route exists: Flask answered its OPTIONS
            response.status_code = 204  # a preflight carries no key: methods and headers only
            response.set_data(b"")
            return response
        if (not g.get("cors_origin_allowed") and consumer_route and response.status_code == 401
                and _origin_allowed_for_publishable_key()):
            g.cors_origin_allowed = True  # the page may read its 401 (an expired token: refresh)
        if g.get("cors_origin_refused") and consumer_route and response.status_code == 403:
            # The refusal, and nothing else, is readable by the refused origin: the page (and the
            # SDK) see `origin_not_allowed` instead of a bare "Failed to fetch". It says nothing
            # about the tenant that the refusal itself does not.
            g.cors_origin_allowed = True
        if not g.get("cors_origin_allowed"):
            setattr(response, FLASK_CORS_EVALUATED, True)  # Flask-CORS then leaves this answer alone
            if consumer_route:
                response.vary.add("Origin")
        return response
