from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from app.api.consumer import blp
from app.api.consumer.challenge import CHALLENGE_HEADER, CHALLENGE_REFUSED, guard
from app.api.grants import GrantView
from app.api.ratelimit import client_key
from app.api.security import current_context, requires
from app.errors import ApiError
from app.grants.otp import OtpGrant
from app.openapi import OPTIONAL_GUEST_TOKEN, ErrorSchema
from app.otp import sms
from app.otp.identifiers import identifier_from
from app.otp.service import FAILURES_PER_IDENTIFIER, DeliveryFailed, request_code
from app.registry import GrantPlugin
from app.schemas.auth import OtpRequestIn, OtpRequestOut, OtpVerifyIn, SessionTokens


@blp.route("/auth/otp/request")
class OtpRequest(MethodView):
    @requires("publishable")
    @blp.arguments(OtpRequestIn(), example={"email": "ann@example.com"})
    @blp.doc(parameters=[CHALLENGE_HEADER])
    @blp.response(202, OtpRequestOut)
    @blp.alt_response(400, schema=ErrorSchema, description="`invalid_email`, `invalid_phone`, "
                                                           "`phone_country_not_allowed` or `validation_error`")
    @blp.alt_response(403, schema=ErrorSchema, description=CHALLENGE_REFUSED)
    @blp.alt_response(429, schema=ErrorSchema, description="Resend cooldown, hourly budget or the mode's SMS per "
                                                           "hour spent (`Retry-After`)")
    @blp.alt_response(503, schema=ErrorSchema, description="The sender or the limit storage is down, or live mode "
                                                           "has no real sender (codes are never printed)")
    def post(self, data):
        """Send a one-time code

        By email, or by SMS to a phone (E.164, or national format with `defaultCountry`). The
        answer is the same whether or not the address is known. A new code replaces the previous one.
        SMS goes only to the countries in the settings' `smsAllowedCountries` (if any) and at most
        `smsPerHour` times an hour per mode.
        """
        ctx = current_context()
        usher, settings = current_app.extensions["usher"], ctx.organization
        identifier = identifier_from(data)
        if identifier.channel == "sms":  # SMS cost controls, before any sender is called
            sms.check_country(settings.sms_allowed_countries, identifier.value)
        usher.senders.for_message(identifier.channel, ctx.mode)  # 503 before anything is spent
        tenant, limits = (ctx.organization_id, ctx.mode), usher.limits
        cooldown = f"1 per {settings.otp_cooldown} second"
        limits.hit("otp_request_ip", f"{settings.otp_requests_per_ip_per_hour} per hour", *tenant, client_key())
        guard("otp_request")
        limits.hit("otp_request_cooldown", cooldown, *tenant, identifier.value)
        limits.hit("otp_request_identifier", f"{settings.otp_requests_per_hour} per hour", *tenant, identifier.value)
        if identifier.channel == "sms":
            sms.spend_budget(limits, settings.sms_per_hour, *tenant)
        try:
            expires_at = request_code(usher.db, usher.senders, usher.settings.app_secret, settings, ctx.mode,
                                      identifier, usher.clock())
        except DeliveryFailed:
            limits.clear("otp_request_cooldown", cooldown, *tenant, identifier.value)
            current_app.extensions["usher_metrics"].count_otp_message(identifier.channel, "failed")
            raise
        current_app.extensions["usher_metrics"].count_otp_message(identifier.channel, "sent")
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
        codes, known and unknown identifiers alike) answer `rate_limited`. A wrong code is
        `otp_invalid` whatever the identifier's history; `otp_expired` only answers the right code
        too late or already used. With a guest's access token in `Authorization`, the guest is
        upgraded: its queue places move to the consumer and its session ends.
        """
        ctx = current_context()
        limits, tenant = current_app.extensions["usher"].limits, (ctx.organization_id, ctx.mode)
        identifier = identifier_from(data)
        limits.hit("otp_verify_ip", f"{ctx.organization.otp_verifies_per_ip_per_hour} per hour", *tenant,
                   client_key())
        limits.check("otp_failures", FAILURES_PER_IDENTIFIER, *tenant, identifier.value)
        try:
            return self.token_response(data)
        except ApiError as error:
            if error.error == "otp_invalid":  # known or unknown identifier alike
                limits.spend("otp_failures", FAILURES_PER_IDENTIFIER, *tenant, identifier.value)
            raise


OTP = GrantPlugin(grant=OtpGrant, views=(OtpVerify,))  # `usher.grants` entry point (app.registry)
