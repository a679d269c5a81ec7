"""One-time code sign-in: verify the code (atomically, once), then the session.

On PostgreSQL, when no guest is upgraded and no webhook endpoint of the tenant listens to
`consumer.created` or `session.created`, a verify is two round trips on an autocommit
connection: the code is read (with the consumer it signs in, if any) and compared in constant
time in Python, then one statement consumes it *only if it is still the code compared and still
live*, creates the consumer if needed and starts the session. A verify that loses a race (the
code consumed, replaced or spent in between, the consumer created or deleted by another request)
writes nothing and takes the locked path below, which decides exactly as before. Otherwise
(SQLite, events to record, a guest to upgrade) one Core transaction locks the code row
(`SELECT … FOR UPDATE`) and writes everything with its events.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeGuard

from sqlalchemy import (
    Connection,
    Row,
    bindparam,
    exists,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from app.errors import ApiError
from app.grants.base import BaseGrant
from app.grants.identified import (
    CONSUMERS,
    SIGN_IN_EVENTS,
    find_or_create_consumer,
    sign_in,
)
from app.models import OtpCode, new_id
from app.otp.identifiers import identifier_from
from app.otp.service import MAX_ATTEMPTS_PER_CODE, code_hash
from app.security.callers import RequestContext
from app.security.keys import constant_time_equal
from app.services.sessions import SESSIONS, new_session_row
from app.services.views import session_body


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
        if self.server.db.one_statement_writes and self.guest_claims is None:
            body = self._in_two_round_trips(presented)
            if body is not None:
                return 200, body
        outcome: str | None = None
        finish: Callable[[], dict] | None = None
        with self.server.db.write() as connection:
            code = connection.execute(_SELECT_CODE, {"organization_id": ctx.organization_id, "mode": ctx.mode,
                                                     "identifier": identifier.value}).first()
            now = self.server.clock()
            outcome = _outcome(self._as_stored(presented, code), code, now)
            if outcome == "otp_invalid":
                _count_wrong_try(connection, code, identifier.value, ctx)
            elif outcome is None:
                assert code is not None  # the right code has a row
                connection.execute(_CONSUME, {"code_id": code.id, "now": now})
                consumer_id = find_or_create_consumer(connection, self.server.events, ctx.organization_id, ctx.mode,
                                                      now, **{identifier.kind: identifier.value})
                _, finish = sign_in(self, connection, consumer_id, now)
        if outcome:
            raise ApiError(outcome)
        assert finish is not None  # no failed outcome: the session was made
        return 200, finish()

    def _as_stored(self, presented: str, code: Row | None) -> str:
        """The presented code's hash under the secret the stored code was hashed with: APP_SECRET,
        or a fallback during a rotation (every fallback is hashed whatever is stored: same work)."""
        fallbacks = self.server.settings.app_secret_fallbacks
        if not fallbacks:
            return presented
        ctx, stored = self.request.ctx, code.code_hash if code is not None else _NO_CODE
        found = presented
        for fallback in fallbacks:
            candidate = code_hash(fallback, ctx.organization_id, ctx.mode, self.identifier.value,
                                  self.request.data["code"])
            if constant_time_equal(candidate, stored) and not constant_time_equal(presented, stored):
                found = candidate
        return found

    def _in_two_round_trips(self, presented: str) -> dict | None:
        """The PostgreSQL path (see the module's docstring): the body, an `ApiError` for a
        wrong or dead code, or None when the locked path must decide."""
        ctx, identifier, db = self.request.ctx, self.identifier, self.server.db
        with db.autocommit() as connection:
            if self.server.events.listens_to_any(connection, ctx.organization_id, ctx.mode, *SIGN_IN_EVENTS):
                return None
            code = connection.execute(_READ_CODE[identifier.kind], {
                "organization_id": ctx.organization_id, "mode": ctx.mode, "identifier": identifier.value}).first()
            now = self.server.clock()
            outcome = _outcome(self._as_stored(presented, code), code, now)
            if outcome == "otp_invalid":
                _count_wrong_try(connection, code, identifier.value, ctx)
            if outcome:
                raise ApiError(outcome)
            assert code is not None  # the right code has a row
            consumer_id = code.consumer_id or new_id("cons")
            row, generation = new_session_row(self.kids, self.server.app_secret, ctx.organization, ctx.mode,
                                              consumer_id, self.SESSION_TYPE, now)
            statement = _CONSUME_AND_START if code.consumer_id else _CONSUME_CREATE_AND_START[identifier.kind]
            try:
                started = connection.execute(statement, {
                    "code_id": code.id, "compared_hash": code.code_hash, "attempt_limit": MAX_ATTEMPTS_PER_CODE,
                    "now": now, "value": identifier.value,
                    **{f"session_{column.key}": getattr(row, column.key) for column in SESSIONS.columns}}).first()
            except IntegrityError:  # the consumer was created (or deleted) meanwhile: nothing was written
                return None
        if started is None:  # the code changed meanwhile: nothing was written
            return None
        access, refresh = self.server.tokens.sign_pair(generation)
        return session_body(row, access, refresh)


def _count_wrong_try(connection: Connection, code: Row | None, identifier: str, ctx: RequestContext) -> None:
    """Count a wrong try against the code just compared, if it is still that code and still live.
    One conditional UPDATE whether there is a live code, a dead one or none, so that a wrong
    code costs the same statements whatever the identifier's history (no timing tells)."""
    connection.execute(_WRONG_TRY, {"code_organization_id": ctx.organization_id, "code_mode": ctx.mode,
                                    "code_identifier": identifier, "attempt_limit": MAX_ATTEMPTS_PER_CODE,
                                    "compared_hash": code.code_hash if code is not None else _NO_CODE})


def _alive(code: Row | None) -> TypeGuard[Row]:
    return code is not None and code.consumed_at is None and code.attempts < MAX_ATTEMPTS_PER_CODE


def _outcome(presented: str, code: Row | None, now: datetime) -> str | None:
    """The one decision on a presented code: None (right and live), `otp_invalid` or
    `otp_expired`. The same work and the same answer whatever the identifier's history: the
    hash is compared even without a code, and a wrong code is `otp_invalid` even when the code
    is dead. Only the right code, too late or already used, is `otp_expired`."""
    right = constant_time_equal(presented, code.code_hash if code is not None else _NO_CODE)
    if code is None or not right:
        return "otp_invalid"
    if not _alive(code) or code.expires_at <= now:
        return "otp_expired"
    return None


_CODES = OtpCode.__table__
_NO_CODE = "0" * 64  # compared against when the identifier has no code, so both paths do the same work
_BY_IDENTIFIER = (_CODES.c.organization_id == bindparam("organization_id"), _CODES.c.mode == bindparam("mode"),
                  _CODES.c.identifier == bindparam("identifier"))
_SELECT_CODE = select(_CODES).where(*_BY_IDENTIFIER).with_for_update()
_CONSUME = update(_CODES).where(_CODES.c.id == bindparam("code_id")).values(consumed_at=bindparam("now"))

# The two-round-trip path. "Still the code compared and still live", the condition of both writes:
# (Bind names are no column's name: an UPDATE would take such a parameter as a value to SET.)
_STILL_LIVE = (_CODES.c.code_hash == bindparam("compared_hash"), _CODES.c.consumed_at.is_(None),
               _CODES.c.attempts < bindparam("attempt_limit"))
_WRONG_TRY = (update(_CODES).where(_CODES.c.organization_id == bindparam("code_organization_id"),
                                   _CODES.c.mode == bindparam("code_mode"),
                                   _CODES.c.identifier == bindparam("code_identifier"), *_STILL_LIVE)
              .values(attempts=_CODES.c.attempts + 1))
_READ_CODE = {kind: select(_CODES, select(CONSUMERS.c.id).where(
    CONSUMERS.c.organization_id == _CODES.c.organization_id, CONSUMERS.c.mode == _CODES.c.mode,
    CONSUMERS.c[kind] == _CODES.c.identifier).scalar_subquery().label("consumer_id")).where(*_BY_IDENTIFIER)
    for kind in ("email", "phone")}
_CONSUMED = (update(_CODES).where(_CODES.c.id == bindparam("code_id"), *_STILL_LIVE,
                                  _CODES.c.expires_at > bindparam("now"))
             .values(consumed_at=bindparam("now")).returning(_CODES.c.id).cte("consumed"))


def _typed(column):
    """The session's value for `column` (`session_…`; also the new consumer's, where they share it)."""
    return bindparam(f"session_{column.key}", type_=column.type)


_START = insert(SESSIONS).from_select([column.key for column in SESSIONS.columns],
                                      select(*(_typed(column) for column in SESSIONS.columns))
                                      .where(exists(select(literal(1)).select_from(_CONSUMED))))
_CONSUME_AND_START = _START.add_cte(_CONSUMED).returning(SESSIONS.c.id)
_CONSUME_CREATE_AND_START = {kind: _START.add_cte(_CONSUMED).add_cte(
    insert(CONSUMERS).from_select(["id", "organization_id", "mode", kind, "created_at"], select(
        _typed(SESSIONS.c.consumer_id), _typed(SESSIONS.c.organization_id), _typed(SESSIONS.c.mode),
        bindparam("value", type_=CONSUMERS.c[kind].type), _typed(SESSIONS.c.created_at)).select_from(_CONSUMED))
    .cte("created"))
    .returning(SESSIONS.c.id) for kind in ("email", "phone")}
