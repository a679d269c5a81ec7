"""The audit log: the tenant's events, newest first."""

from __future__ import annotations

from flask import render_template, request
from marshmallow import ValidationError

from app.api.admin.audit import AuditEventArgs
from app.api.helpers import db_session
from app.dashboard.common import bp, ctx, error_messages, requires_scope
from app.services import audit


@bp.route("/audit")
@requires_scope("audit:read")
def audit_log():
    """The audit events of the tenant, newest first, filtered by type, page by page (the
    `GET /audit-events` query, validated by its schema)."""
    args = {name: request.args[name] for name in ("type", "startingAfter") if request.args.get(name)}
    errors: dict = {}
    result = {"data": [], "has_more": False}
    try:
        loaded = AuditEventArgs().load(args)
    except ValidationError as error:
        errors = error_messages(error)
    else:
        result = audit.list_events(db_session(), ctx().organization_id, ctx().mode, loaded["limit"],
                                   loaded.get("starting_after"), loaded.get("type"))
    return render_template("dashboard/audit.html", result=result, event_type=args.get("type", ""),
                           errors=errors), 400 if errors else 200
