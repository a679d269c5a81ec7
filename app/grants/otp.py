"""One-time code sign-in: verify the code (atomically, once), then the session."""

from __future__ import annotations

from sqlalchemy import select, update

from app.db import utcnow
from app.errors import ApiError
from app.grants.base import BaseGrant
from app.grants.identified import sign_in
from app.models import OtpCode
from app.otp.identifiers import identifier_from
from app.otp.service import FAILURES_PER_IDENTIFIER, MAX_ATTEMPTS_PER_CODE, code_hash
from app.ratelimit import client_ip
from app.security.context import guest_caller
from app.security.keys import constant_time_equal


class OtpGrant(BaseGrant):
    GRANT_TYPE = "otp"
    SESSION_TYPE = "otp"

    def validate_token_request(self) -> None:
        ctx, limits = self.request.ctx, self.server.limits
        self.identifier = identifier_from(self.request.data)
        tenant = (ctx.organization_id, ctx.mode)
        limits.hit("otp_verify_ip", f"{ctx.organization.otp_verifies_per_ip_per_hour} per hour", *tenant,
                   client_ip())
        limits.check("otp_failures", FAILURES_PER_IDENTIFIER, *tenant, self.identifier.value)
        self.guest_id = guest_caller(ctx)
        self.kid = self.server.tokens.keyring.current().kid

    def create_token_response(self) -> tuple[int, dict]:
        ctx, identifier = self.request.ctx, self.identifier
        presented = code_hash(self.server.app_secret, ctx.organization_id, ctx.mode, identifier.value,
                              self.request.data["code"])
        outcome = None
        with self.server.db.transaction(self.request.session) as tx:
            code = tx.scalar(select(OtpCode).where(
                OtpCode.organization_id == ctx.organization_id, OtpCode.mode == ctx.mode,
                OtpCode.identifier == identifier.value).with_for_update())
            if code is None:
                outcome = "otp_invalid"
            elif code.consumed_at is not None or code.expires_at <= utcnow() or code.attempts >= MAX_ATTEMPTS_PER_CODE:
                outcome = "otp_expired"
            elif not constant_time_equal(presented, code.code_hash):
                tx.execute(update(OtpCode).where(OtpCode.id == code.id).values(attempts=OtpCode.attempts + 1))
                outcome = "otp_invalid"
            else:
                code.consumed_at = utcnow()
                body = sign_in(self, tx, {identifier.kind: identifier.value})
        if outcome == "otp_invalid":
            self.server.limits.spend("otp_failures", FAILURES_PER_IDENTIFIER, ctx.organization_id, ctx.mode,
                                     identifier.value)
        if outcome:
            raise ApiError(outcome)
        return 200, body

