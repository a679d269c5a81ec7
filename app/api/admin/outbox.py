from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from app.api.admin import blp
from app.api.helpers import db_session
from app.api.security import current_context, requires
from app.openapi import ErrorSchema
from app.schemas.auth import OutboxArgs, OutboxList
from app.services.outbox import outbox_messages


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
        capture = current_app.extensions["usher"].senders.capture
        return {"data": outbox_messages(db_session(), capture, ctx.organization_id, ctx.mode, args["limit"])}
