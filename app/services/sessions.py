"""Sessions and their token generations: start, rotate, revoke.

A generation is fully described by the `AuthSession` row plus the predecessor's `jti`: the
successor's ids are derived with HMAC(APP_SECRET) from the refresh token being rotated, so
only a holder of that token can have them signed again, and nothing secret is stored.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import AuthSession, Organization, new_id
from app.security.keys import keyed_hash
from app.tokens.service import Generation, TokenService


def random_jti() -> str:
    return secrets.token_hex(16)


def successor_jtis(app_secret: str, refresh_jti: str) -> tuple[str, str]:
    """The (access, refresh) jtis of the generation that follows a refresh token."""
    return (keyed_hash(app_secret, "access-successor", refresh_jti)[:32],
            keyed_hash(app_secret, "refresh-successor", refresh_jti)[:32])


def refresh_hash(app_secret: str, refresh_jti: str) -> str:
    return keyed_hash(app_secret, "refresh", refresh_jti)


def _stamp(row: AuthSession, kid: str, now: datetime, organization: Organization) -> None:
    iat = int(now.timestamp())
    row.generation_kid = kid
    row.generation_iat = iat
    row.generation_access_exp = iat + organization.access_token_ttl
    row.generation_refresh_exp = iat + organization.refresh_token_ttl
    row.expires_at = now.replace(microsecond=0) + timedelta(seconds=organization.refresh_token_ttl)


def generation_of(row: AuthSession, access_jti: str, refresh_jti: str) -> Generation:
    return Generation(kid=row.generation_kid, organization_id=row.organization_id, mode=row.mode,
                      consumer_id=row.consumer_id, session_id=row.id, access_jti=access_jti,
                      refresh_jti=refresh_jti, iat=row.generation_iat, access_exp=row.generation_access_exp,
                      refresh_exp=row.generation_refresh_exp)


def start_session(session: Session, tokens: TokenService, kid: str, app_secret: str, organization: Organization,
                  mode: str, consumer_id: str, session_type: str) -> tuple[AuthSession, str, str]:
    """A new session for a consumer and its first token pair, signed with key `kid`.

    Callers take `kid` from the keyring before their transaction: the keyring may need the
    database itself, and on SQLite a write transaction holds the only write lock.
    """
    now = utcnow()
    access_jti, refresh_jti = random_jti(), random_jti()
    row = AuthSession(id=new_id("sess"), organization_id=organization.id, mode=mode, consumer_id=consumer_id,
                      type=session_type, created_at=now, refresh_hash=refresh_hash(app_secret, refresh_jti))
    _stamp(row, kid, now, organization)
    access, refresh = tokens.sign_pair(generation_of(row, access_jti, refresh_jti))
    session.add(row)
    return row, access, refresh


def rotate(row: AuthSession, tokens: TokenService, kid: str, app_secret: str, organization: Organization,
           presented_jti: str) -> tuple[str, str]:
    """Make the successor of the presented (current) refresh token the current generation."""
    now = utcnow()
    access_jti, refresh_jti = successor_jtis(app_secret, presented_jti)
    row.previous_refresh_hash = row.refresh_hash
    row.refresh_hash = refresh_hash(app_secret, refresh_jti)
    row.rotated_at = now
    _stamp(row, kid, now, organization)
    return tokens.sign_pair(generation_of(row, access_jti, refresh_jti))


def resign_successor(row: AuthSession, tokens: TokenService, app_secret: str, presented_jti: str) -> tuple[str, str]:
    """The current pair again, for a racing holder of its predecessor (inside the grace window)."""
    access_jti, refresh_jti = successor_jtis(app_secret, presented_jti)
    return tokens.sign_pair(generation_of(row, access_jti, refresh_jti))


def revoke(session: Session, reason: str, *criteria) -> int:
    """Revoke every live session matching the criteria; return how many."""
    result = session.execute(update(AuthSession).where(AuthSession.revoked_at.is_(None), *criteria)
                             .values(revoked_at=utcnow(), revoked_reason=reason))
    return result.rowcount
