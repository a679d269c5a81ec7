"""Consumers: search, one consumer with its sessions, and ending them."""

from __future__ import annotations

import contextlib

from flask import flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from app.api.helpers import ID_SHAPE, db_session, events, now, tenant_get, transaction
from app.dashboard.common import bp, ctx, error_messages, requires_scope, unconfirmed
from app.errors import ApiError
from app.models import AuthSession, Consumer
from app.schemas.consumers import ConsumerListArgs
from app.security.scopes import has_scope
from app.services.consumers import (
    consumer_page,
    consumer_sessions,
    consumer_views,
    end_consumer_sessions,
    end_session,
)


@bp.route("/consumers")
@requires_scope("consumers:read")
def consumers():
    """Search by email, phone or id; without a query, the consumers page by page."""
    query = request.args.get("q", "").strip()
    errors: dict = {}
    result: dict = {"data": [], "has_more": False}
    db = db_session()
    if ID_SHAPE.fullmatch(query):
        with contextlib.suppress(ApiError):  # unknown here: no result, as for an unknown email
            result["data"] = consumer_views(db, [tenant_get(db, Consumer, query, ctx())])
    else:
        args = {"startingAfter": request.args.get("startingAfter")} if request.args.get("startingAfter") else {}
        if query:
            args["email" if "@" in query else "phone"] = query
        try:
            args = ConsumerListArgs().load(args)
        except ValidationError as error:
            errors = error_messages(error)
        else:
            result = consumer_page(db, ctx().organization_id, ctx().mode, args)
    return render_template("dashboard/consumers.html", query=query, result=result,
                           errors=errors), 400 if errors else 200


@bp.route("/consumers/<consumer_id>")
@requires_scope("consumers:read")
def consumer(consumer_id: str):
    db = db_session()
    row = tenant_get(db, Consumer, consumer_id, ctx())
    return render_template("dashboard/consumer.html", consumer=consumer_views(db, [row])[0],
                           sessions=consumer_sessions(db, row), can_end=has_scope(ctx(), "sessions:write"))


@bp.route("/consumers/<consumer_id>/end-sessions", methods=["POST"])
@requires_scope("sessions:write")
def end_consumer_sessions_view(consumer_id: str):
    tenant_get(db_session(), Consumer, consumer_id, ctx())
    asking = unconfirmed("End all sessions of this consumer?",
                         "Every device signed in as this consumer is signed out and must sign in again.",
                         "End all sessions", url_for("dashboard.consumer", consumer_id=consumer_id))
    if asking is not None:
        return asking
    with transaction() as db:
        count = end_consumer_sessions(db, events(), ctx(), tenant_get(db, Consumer, consumer_id, ctx()), now())
    flash(f"Ended {count} session{'s' if count != 1 else ''}.", "info")
    return redirect(url_for("dashboard.consumer", consumer_id=consumer_id), 303)


@bp.route("/sessions/<session_id>/end", methods=["POST"])
@requires_scope("sessions:write")
def end_session_view(session_id: str):
    with transaction() as db:
        row = tenant_get(db, AuthSession, session_id, ctx())
        consumer_id = row.consumer_id
        count = end_session(db, events(), ctx(), row, now())
    flash("Ended the session." if count else "The session had already ended.", "info")
    return redirect(url_for("dashboard.consumer", consumer_id=consumer_id), 303)
