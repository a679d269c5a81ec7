"""One-time code sign-in: verify the code (atomically, once), then the session."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import bindparam, select, update

from app.errors import ApiError
from app.grants.base import BaseGrant
from app.grants.identified import find_or_create_consumer, sign_in
from app.models import OtpCode
from app.otp.identifiers import identifier_from
from app.otp.service import FAILURES_PER_IDENTIFIER, MAX_ATTEMPTS_PER_CODE, code_hash
from app.security.keys import constant_time_equal


class OtpGrant(BaseGrant):
    GRANT_TYPE = "otp"
    SESSION_TYPE = "otp"
    UPGRADES_GUEST = True

    def validate_token_request(self) -> None:
        ctx, limits = self.request.ctx, self.server.limits
        self.identifier = identifier_from(self.request.data)
        tenant = (ctx.organization_id, ctx.mode)
        limits.hit("otp_verify_ip", f"{ctx.organization.otp_verifies_per_ip_per_hour} per hour", *tenant,
                   self.request.client_ip)
        limits.check("otp_failures", FAILURES_PER_IDENTIFIER, *tenant, self.identifier.value)

    def create_token_response(self) -> tuple[int, dict]:
        ctx, identifier = self.request.ctx, self.identifier
        presented = code_hash(self.server.app_secret, ctx.organization_id, ctx.mode, identifier.value,
                              self.request.data["code"])
        outcome: str | None = None
        finish: Callable[[], dict] | None = None
        with self.server.db.write() as connection:
            code = connection.execute(_SELECT_CODE, {"organization_id": ctx.organization_id, "mode": ctx.mode,
                                                     "identifier": identifier.value}).first()
            now = self.server.clock()
            if code is None:
                outcome = "otp_invalid"
            elif code.consumed_at is not None or code.expires_at <= now or code.attempts >= MAX_ATTEMPTS_PER_CODE:
                outcome = "otp_expired"
            elif not constant_time_equal(presented, code.code_hash):
                connection.execute(_WRONG_TRY, {"code_id": code.id})
                outcome = "otp_invalid"
            else:
                connection.execute(_CONSUME, {"code_id": code.id, "now": now})
                consumer_id = find_or_create_consumer(connection, ctx.organization_id, ctx.mode, now,
                                                      **{identifier.kind: identifier.value})
                _, finish = sign_in(self, connection, consumer_id, now)
        if outcome == "otp_invalid":
            self.server.limits.spend("otp_failures", FAILURES_PER_IDENTIFIER, ctx.organization_id, ctx.mode,
                                     identifier.value)
        if outcome:
            raise ApiError(outcome)
        assert finish is not None  # no failed outcome: the session was made
        return 200, finish()


_CODES = OtpCode.__table__
_SELECT_CODE = (select(_CODES).where(_CODES.c.organization_id == bindparam("organization_id"),
                                     _CODES.c.mode == bindparam("mode"),
                                     _CODES.c.identifier == bindparam("identifier")).with_for_update())
_WRONG_TRY = update(_CODES).where(_CODES.c.id == bindparam("code_id")).values(attempts=_CODES.c.attempts + 1)
_CONSUME = update(_CODES).where(_CODES.c.id == bindparam("code_id")).values(consumed_at=bindparam("now"))
