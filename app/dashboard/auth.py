"""Sign-in and sign-out, and the dashboard's root (the first page the key reaches)."""

from __future__ import annotations

import math

from flask import flash, redirect, render_template, request, session, url_for

from app.api.ratelimit import client_key
from app.dashboard.common import (
    bp,
    ctx,
    dashboard_sessions,
    describe,
    usher,
    visible_pages,
)
from app.errors import AUTHENTICATION_REQUIRED, SECRET_KEY_REQUIRED, ApiError
from app.security.keys import parse_key

SIGN_IN_TYPES = ("secret", "restricted")  # key types that may sign in
# Failed sign-ins per client address (`DASHBOARD_SIGN_IN_RATE_LIMIT`), counted before any tenant is
# known, hence a tenant and mode of their own in the limit's key.
SIGN_IN_FAILURES = ("dashboard_sign_in_failures", "-", "dashboard")


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    """Sign in with a secret key. The value is resolved like a bearer key on the admin API and
    then forgotten: the session refers to the key's id."""
    error = None
    if request.method == "POST":
        limits, rate = usher().limits, usher().settings.dashboard_sign_in_rate_limit
        name, tenant, mode = SIGN_IN_FAILURES
        try:  # as OTP verify's failure budget: refused once spent, spent by failures only
            limits.check(name, rate, tenant, mode, client_key(), fail_closed=False)
        except ApiError as refused:
            wait = int(refused.headers["Retry-After"])
            message = (f"{describe(refused)} Too many failed sign-ins from this address: try again in "
                       + (f"{wait} seconds." if wait < 120 else f"{math.ceil(wait / 60)} minutes."))
            return render_template("dashboard/sign_in.html", error=message), refused.status, refused.headers
        value = request.form.get("key", "").strip()
        parsed = parse_key(value)
        caller = None
        if parsed is not None and parsed[0] in SIGN_IN_TYPES:
            caller = usher().callers.resolve_key(usher().reader, value, parsed[0])
        if caller is not None:
            session.clear()  # a new session id and a new CSRF secret after sign-in
            session["token"] = dashboard_sessions().start(caller.key_id)
            session.permanent = True
            pages = visible_pages(caller)
            return redirect(url_for(pages[0].endpoint if pages else "dashboard.home"), 303)
        limits.spend(name, rate, tenant, mode, client_key())
        if parsed is not None and parsed[0] == "publishable":
            error = f"{SECRET_KEY_REQUIRED}: a publishable key cannot sign in."
        else:
            error = f"{AUTHENTICATION_REQUIRED}: this key is unknown, expired or revoked."
    return render_template("dashboard/sign_in.html", error=error), 400 if error else 200


@bp.route("/sign-out", methods=["POST"])
def sign_out():
    dashboard_sessions().end(session.pop("token"))
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("dashboard.sign_in"), 303)


@bp.route("")
@bp.route("/")
def home():
    """The first page this key reaches; a key that reaches none is told so."""
    pages = visible_pages(ctx())
    if pages:
        return redirect(url_for(pages[0].endpoint), 303)
    return render_template("dashboard/error.html", title="Nothing to show",
                           message="This key's scopes reach no dashboard page: "
                                   + ", ".join(sorted(ctx().scopes)) + "."), 200
