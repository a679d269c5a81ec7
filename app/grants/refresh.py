"""Refresh token rotation with a grace window; reuse after the window means theft.

Each refresh token works once. Holders of the predecessor who race inside the grace window
(browser tabs) get the current pair again, byte for byte; a rotated token presented later
revokes the whole session (microblog-api's and OAuth 2.0 Security BCP's reuse detection).

On PostgreSQL the common case, the current token of a live session, is two round trips in
autocommit: the session row is read and the token's hash compared in constant time in Python,
then the rotation is written by an UPDATE that matches only if the session is still live and
that hash is still its current one. Anything else (a predecessor, reuse, a dead or foreign
session) and a rotation that lost a race take the locked transaction, which decides as before.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypeGuard

from app.errors import ApiError
from app.events import RefreshTokenReused
from app.grants.base import BaseGrant
from app.metrics import security_event
from app.models import AuthSession
from app.security.keys import constant_time_equal
from app.services import audit
from app.services.sessions import (
    lock_session,
    read_session,
    refresh_hash,
    revoke_one,
    rotate,
    save_rotation,
    save_rotation_if_current,
    successor_generation,
    successor_jtis,
)
from app.tokens.service import REFRESH, Generation, Kids, TokenError


class RefreshTokenGrant(BaseGrant):
    GRANT_TYPE = "refresh_token"

    def validate_token_request(self) -> None:
        ctx = self.request.ctx
        try:
            self.claims = self.server.tokens.verify(self.request.data["refresh_token"], REFRESH,
                                                    ctx.organization_id, ctx.mode)
        except TokenError as exc:
            raise ApiError("refresh_token_expired" if exc.expired else "refresh_token_invalid") from None

    def create_token_response(self) -> tuple[int, dict]:
        presented = refresh_hash(self.server.app_secret, self.claims["jti"])
        kids, now = self.server.tokens.current_kids(), self.server.clock()
        generation = None
        if self.server.db.one_statement_writes:
            generation = self._rotate_in_two_round_trips(presented, kids, now)
        if generation is None:
            generation = self._rotate_locked(presented, kids, now)
        access, refresh = self.server.tokens.sign_pair(generation)  # outside the write
        return 200, {"accessToken": access, "refreshToken": refresh}  # wire form (`TokenPair`)

    def _rotate_locked(self, presented: str, kids: Kids, now: datetime) -> Generation:
        """The session row locked: rotate, or the current generation inside the grace window, or
        reuse (the session revoked, `refresh_token_reused`)."""
        claims, secret = self.claims, self.server.app_secret
        grace = timedelta(seconds=self.server.settings.refresh_grace_seconds)
        with self.server.db.write() as connection:
            row = lock_session(connection, claims["sessionId"])
            if not _live_session_of(row, claims):
                raise ApiError("refresh_token_invalid")
            presented = _presented_hash(row, presented, claims["jti"], self.server.settings.app_secret_fallbacks)
            if constant_time_equal(presented, row.refresh_hash):
                generation = rotate(row, kids, secret, self.request.ctx.organization, claims["jti"], now)
                save_rotation(connection, row)
            elif (row.previous_refresh_hash is not None and constant_time_equal(presented, row.previous_refresh_hash)
                  and row.rotated_at is not None and now - row.rotated_at <= grace
                  and constant_time_equal(refresh_hash(secret, successor_jtis(secret, claims["jti"])[1]),
                                          row.refresh_hash)):
                generation = successor_generation(row, secret, claims["jti"])
            else:
                revoke_one(connection, self.server.events, row.id, "refresh_token_reused", now)
                audit.record(connection, row.organization_id, row.mode, audit.SYSTEM, "refresh_token.reused",
                             ("session", row.id), {"consumerId": row.consumer_id, "sessionRevoked": True}, now)
                self.server.events.record(connection, RefreshTokenReused(
                    organization_id=row.organization_id, mode=row.mode, session_id=row.id,
                    consumer_id=row.consumer_id))
                generation = None
        if generation is None:
            security_event("refresh_token_reused", session=claims["sessionId"], org=claims["organizationId"])
            raise ApiError("refresh_token_reused")
        return generation

    def _rotate_in_two_round_trips(self, presented: str, kids: Kids, now: datetime) -> Generation | None:
        """The PostgreSQL path (see the module's docstring): the new generation, written; or
        None, having written nothing, when the locked path must decide."""
        claims = self.claims
        with self.server.db.autocommit() as connection:
            row = read_session(connection, claims["sessionId"])
            if not _live_session_of(row, claims) or not constant_time_equal(presented, row.refresh_hash):
                return None
            generation = rotate(row, kids, self.server.app_secret, self.request.ctx.organization, claims["jti"], now)
            return generation if save_rotation_if_current(connection, row) else None


def _presented_hash(row: AuthSession, presented: str, jti: str, fallbacks: tuple[str, ...]) -> str:
    """The presented token's hash as the row holds it: APP_SECRET's, or (a session last rotated
    before an APP_SECRET rotation) the first fallback's that matches the current or previous hash."""
    stored = (row.refresh_hash, row.previous_refresh_hash or "")
    if not fallbacks or any(constant_time_equal(presented, value) for value in stored):
        return presented
    for fallback in fallbacks:
        candidate = refresh_hash(fallback, jti)
        if any(constant_time_equal(candidate, value) for value in stored):
            return candidate
    return presented


def _live_session_of(row: AuthSession | None, claims: dict) -> TypeGuard[AuthSession]:
    """Whether the row is the token's session, and live."""
    return (row is not None and row.revoked_at is None and row.organization_id == claims["organizationId"]
            and row.mode == claims["mode"] and row.consumer_id == claims["consumerId"])
