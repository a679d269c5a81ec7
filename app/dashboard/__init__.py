"""The admin dashboard (`GET /dashboard`): server-rendered pages over the admin API's services.

Every rule lives in `app.services` and `CallerResolver`; the views here only translate forms
into those calls and their answers (including `ApiError`s and marshmallow messages) into HTML.
One module per page (`auth`: sign-in, sign-out and the root; `keys`, `settings`, `consumers`,
`outbox`, `audit`, `webhooks`), each adding its routes to the one blueprint of `common`, which
holds what they share: the request hooks (CSRF, the session, the headers), the navigation,
the template filters and the form helpers. No page runs a query of its own: each calls the
service the admin API calls.

- Session: Flask's signed cookie carries only a random token (`HttpOnly`, `SameSite=Strict`,
  `Secure` when `ISSUER` is https, path `/dashboard`); the server-side row (`DashboardSession`)
  refers to the key by id, and the key row is re-checked on every page.
- CSRF: Flask-WTF's `CSRFProtect`, checked by this blueprint only (`WTF_CSRF_CHECK_DEFAULT` is
  off), so the JSON API, which takes no cookies, is unaffected.
"""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module
from pathlib import Path

from flask import Flask, Response
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect

from app.security.keys import keyed_hash
from app.services.dashboard import IDLE_EXPIRY, DashboardSessions

COOKIE_NAME = "usher_dashboard"
PAGE_MODULES = ("auth", "keys", "settings", "consumers", "outbox", "audit", "webhooks")


class DashboardCookieSession(SecureCookieSessionInterface):
    """Flask's signed-cookie session, opened for the dashboard's paths only: the JSON API takes
    no cookies, so its requests skip building the signer (a measurable share of a guest sign-in)."""

    def open_session(self, app, request):
        if not request.path.startswith("/dashboard"):
            return None  # Flask's NullSession: any write to it raises
        return super().open_session(app, request)


def init_dashboard(app: Flask) -> None:
    """Configure the cookie and CSRF, build the session store, register the blueprint."""
    from app.dashboard.common import bp

    for page in PAGE_MODULES:  # importing a page adds its routes to `bp`
        import_module(f"app.dashboard.{page}")

    usher = app.extensions["usher"]
    settings = usher.settings
    if not app.config.get("SECRET_KEY"):  # signs the cookie; derived, so every worker agrees
        app.config["SECRET_KEY"] = keyed_hash(settings.app_secret, "flask-session-cookie")
        app.config["SECRET_KEY_FALLBACKS"] = [keyed_hash(fallback, "flask-session-cookie")
                                              for fallback in settings.app_secret_fallbacks]
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_PATH="/dashboard",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.issuer.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=IDLE_EXPIRY,
        WTF_CSRF_CHECK_DEFAULT=False,  # this blueprint checks its own forms (see common._guard)
        WTF_CSRF_TIME_LIMIT=int(IDLE_EXPIRY / timedelta(seconds=1)),
    )
    app.session_interface = DashboardCookieSession()
    CSRFProtect(app)  # kept by Flask-WTF in app.extensions["csrf"]
    app.extensions["dashboard"] = DashboardSessions(usher.db, settings.app_secret, usher.clock,
                                                        settings.app_secret_fallbacks)
    app.register_blueprint(bp)
    # Browsers ask every page's origin for /favicon.ico (a 404 is a console error on every page).
    icon = (Path(bp.static_folder or "") / "favicon.ico").read_bytes()
    app.add_url_rule("/favicon.ico", "favicon", lambda: Response(icon, mimetype="image/x-icon", headers={
        "Cache-Control": "public, max-age=86400"}))
