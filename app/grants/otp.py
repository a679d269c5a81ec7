"""One-time code sign-in: verify the code (atomically, once), then the session."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import bindparam, select, update

from app.errors import ApiError
from app.grants.base import BaseGrant
from app.grants.identified import find_or_create_consumer, sign_in
from app.models import OtpCode
from app.otp.identifiers import identifier_from
from app.otp.service import MAX_ATTEMPTS_PER_CODE, code_hash
from app.security.keys import constant_time_equal


class OtpGrant(BaseGrant):
    GRANT_TYPE = "otp"
    SESSION_TYPE = "otp"
    UPGRADES_GUEST = True

    def validate_token_request(self) -> None:
        self.identifier = identifier_from(self.request.data)

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
            # The same work and the same answer whatever the identifier's history: the hash is
            # compared even without a code, and a wrong code is `otp_invalid` even when the code
            # is dead. Only the right code, too late or already used, is `otp_expired`.
            right = constant_time_equal(presented, code.code_hash if code is not None else _NO_CODE)
            if code is None or not right:
                if code is not None and code.consumed_at is None and code.attempts < MAX_ATTEMPTS_PER_CODE:
                    connection.execute(_WRONG_TRY, {"code_id": code.id})
                outcome = "otp_invalid"
            elif code.consumed_at is not None or code.expires_at <= now or code.attempts >= MAX_ATTEMPTS_PER_CODE:
                outcome = "otp_expired"
            else:
                connection.execute(_CONSUME, {"code_id": code.id, "now": now})
                consumer_id = find_or_create_consumer(connection, ctx.organization_id, ctx.mode, now,
                                                      **{identifier.kind: identifier.value})
                _, finish = sign_in(self, connection, consumer_id, now)
        if outcome:
            raise ApiError(outcome)
        assert finish is not None  # no failed outcome: the session was made
        return 200, finish()


_CODES = OtpCode.__table__
_NO_CODE = "0" * 64  # compared against when the identifier has no code, so both paths do the same work
_SELECT_CODE = (select(_CODES).where(_CODES.c.organization_id == bindparam("organization_id"),
                                     _CODES.c.mode == bindparam("mode"),
                                     _CODES.c.identifier == bindparam("identifier")).with_for_update())
_WRONG_TRY = update(_CODES).where(_CODES.c.id == bindparam("code_id")).values(attempts=_CODES.c.attempts + 1)
_CONSUME = update(_CODES).where(_CODES.c.id == bindparam("code_id")).values(consumed_at=bindparam("now"))
