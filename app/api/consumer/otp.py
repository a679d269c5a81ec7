from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from app.api.consumer import blp
from app.api.grants import GrantView
from app.api.security import current_context, requires
from app.grants.otp import OtpGrant
from app.openapi import OPTIONAL_GUEST_TOKEN, ErrorSchema
from app.otp.identifiers import identifier_from
from app.otp.service import request_code, request_limits
from app.ratelimit import client_ip
from app.schemas.auth import OtpRequestIn, OtpRequestOut, OtpVerifyIn, SessionTokens


@blp.route("/auth/otp/request")
class OtpRequest(MethodView):
    @requires("publishable")
    @blp.arguments(OtpRequestIn(), example={"email": "ann@example.com"})
    @blp.response(202, OtpRequestOut)
    @blp.alt_response(400, schema=ErrorSchema, description="`invalid_email`, `invalid_phone` or `validation_error`")
    @blp.alt_response(429, schema=ErrorSchema, description="Resend cooldown or hourly budget spent (`Retry-After`)")
    @blp.alt_response(503, schema=ErrorSchema, description="The sender or the limit storage is down")
    def post(self, data):
        """Send a one-time code

        By email, or by SMS to a phone (E.164, or national format with `defaultCountry`). The
        answer is the same whether or not the address is known. A new code replaces the previous one.
        """
        ctx = current_context()
        usher = current_app.extensions["usher"]
        identifier = identifier_from(data)
        request_limits(usher.limits, ctx.organization, ctx.mode, identifier, client_ip())
        expires_at = request_code(usher.db, usher.senders, usher.limits,
                                  usher.settings.app_secret, ctx.organization, ctx.mode, identifier, usher.clock())
        return {"sent": True, "expires_at": expires_at}


class OtpVerify(GrantView):
    grant = OtpGrant
    rule = "/auth/otp/verify"

    @blp.doc(security=OPTIONAL_GUEST_TOKEN)
    @requires("publishable")
    @blp.arguments(OtpVerifyIn(), example={"email": "ann@example.com", "code": "123456"})
    @blp.response(200, SessionTokens)
    @blp.alt_response(401, schema=ErrorSchema, description="`otp_invalid` or `otp_expired`")
    @blp.alt_response(429, schema=ErrorSchema, description="Too many wrong codes for this identifier or address")
    def post(self, data):
        """Sign in with a one-time code

        Single use. Five wrong tries end a code; ten wrong tries per identifier per hour (across
        codes) answer `rate_limited`. With a guest's access token in `Authorization`, the guest is
        upgraded: its queue places move to the consumer and its session ends.
        """
        return self.token_response(data)
