"""The test outbox: the codes test mode captured instead of sending them."""

from __future__ import annotations

from flask import render_template

from app.api.helpers import db_session
from app.dashboard.common import bp, ctx, requires_scope, usher
from app.schemas.auth import OutboxArgs
from app.services.outbox import outbox_messages


@bp.route("/outbox")
@requires_scope("consumers:read")
def outbox():
    args = OutboxArgs().load({})
    messages = outbox_messages(db_session(), usher().senders.capture, ctx().organization_id, ctx().mode,
                               args["limit"])
    return render_template("dashboard/outbox.html", messages=messages)
