from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from sqlalchemy import select

from app.api.admin import blp
from app.api.helpers import db_session
from app.api.security import current_context, requires
from app.errors import ApiError
from app.models import CapturedMessage
from app.openapi import ErrorSchema
from app.schemas.auth import OutboxArgs, OutboxList


@blp.route("/test/otp-messages")
class Outbox(MethodView):
    @requires("secret", scope="consumers:read")
    @blp.arguments(OutboxArgs(), location="query")
    @blp.response(200, OutboxList)
    @blp.alt_response(403, schema=ErrorSchema, description="A live-mode key: the outbox exists only in test mode")
    def get(self, args):
        """Test-mode OTP messages

        What test mode captured instead of sending, newest first. Test-mode secret key only.
        """
        ctx = current_context()
        if ctx.mode != "test":
            raise ApiError("forbidden", "The outbox exists only in test mode; use a test-mode secret key.")
        capture = current_app.extensions["usher"].senders.capture
        rows = db_session().scalars(select(CapturedMessage).where(
            CapturedMessage.organization_id == ctx.organization_id, CapturedMessage.mode == "test")
            .order_by(CapturedMessage.id.desc()).limit(args["limit"]))
        return {"data": [{"id": r.id, "channel": r.channel, "to": r.recipient, "body": capture.read(r),
                          "created_at": r.created_at} for r in rows]}
