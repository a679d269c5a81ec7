"""Refresh token rotation with a grace window; reuse after the window means theft (RFC 6749 §6,
the OAuth 2.0 Security BCP's refresh token rotation).

Each refresh token works once. Holders of the predecessor who race inside the grace window
(browser tabs) get the current pair again, byte for byte; a rotated token presented later
revokes the whole session (microblog-api's and the Security BCP's reuse detection).

This module is the policy (`RotationPolicy`: a session row to a `Decision`); the refresh store
(`app.stores.refresh`) reads the row, asks the policy and carries the decision out atomically,
on PostgreSQL in two autocommit round trips when it is a rotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeGuard

from app.errors import ApiError
from app.grants.base import BaseGrant
from app.models import AuthSession
from app.security.callers import OrganizationSnapshot
from app.security.keys import constant_time_equal
from app.services.sessions import (
    refresh_hash,
    rotate,
    successor_generation,
    successor_jtis,
)
from app.stores.refresh import Decision, Verdict
from app.tokens.service import REFRESH, Kids, TokenError


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
        claims, server, now = self.claims, self.server, self.server.clock()
        policy = RotationPolicy(claims=claims, presented=refresh_hash(server.app_secret, claims["jti"]),
                                app_secret=server.app_secret, fallbacks=server.settings.app_secret_fallbacks,
                                grace=timedelta(seconds=server.settings.refresh_grace_seconds),
                                kids=server.tokens.current_kids(), organization=self.request.ctx.organization, now=now)
        decision = server.stores.refresh.rotate(claims["sessionId"], policy, now)
        if decision.verdict is Verdict.REUSED:  # the session is revoked (committed)
            server.metrics.security_event("refresh_token_reused", session=claims["sessionId"],
                                          org=claims["organizationId"])
            raise ApiError("refresh_token_reused")
        if decision.generation is None:
            raise ApiError("refresh_token_invalid")
        access, refresh = server.tokens.sign_pair(decision.generation)  # outside the write
        return 200, {"accessToken": access, "refreshToken": refresh}  # wire form (`TokenPair`)


@dataclass(frozen=True)
class RotationPolicy:
    """What a presented refresh token makes of its session row (the store's `Policy`)."""

    claims: dict
    #: The presented token's hash under APP_SECRET.
    presented: str
    app_secret: str
    fallbacks: tuple[str, ...]
    grace: timedelta
    kids: Kids
    organization: OrganizationSnapshot
    now: datetime

    def __call__(self, row: AuthSession | None) -> Decision:
        """Rotate the current token; the current generation to its predecessor inside the grace
        window; reuse for anything older (compared in constant time); invalid for a dead or
        foreign session."""
        claims, secret = self.claims, self.app_secret
        if not _live_session_of(row, claims):
            return Decision(Verdict.INVALID)
        presented = _presented_hash(row, self.presented, claims["jti"], self.fallbacks)
        if constant_time_equal(presented, row.refresh_hash):
            return Decision(Verdict.ROTATE, rotate(row, self.kids, secret, self.organization, claims["jti"], self.now))
        if (row.previous_refresh_hash is not None and constant_time_equal(presented, row.previous_refresh_hash)
                and row.rotated_at is not None and self.now - row.rotated_at <= self.grace
                and constant_time_equal(refresh_hash(secret, successor_jtis(secret, claims["jti"])[1]),
                                        row.refresh_hash)):
            return Decision(Verdict.CURRENT, successor_generation(row, secret, claims["jti"]))
        return Decision(Verdict.REUSED)


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
