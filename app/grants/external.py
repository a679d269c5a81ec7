"""External authentication: a merchant's server vouches for a shopper (authorize), the
shopper's browser trades the code for a session (exchange)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy import bindparam, insert, select, update

from app.errors import ApiError
from app.events import ExchangeCodeReplayed
from app.grants.base import AuthServer, BaseGrant
from app.grants.identified import insert_consumer, sign_in
from app.metrics import security_event
from app.models import ExchangeCode, ExternalIdentity
from app.security.callers import RequestContext
from app.security.keys import constant_time_equal, keyed_hash
from app.services import audit
from app.services.sessions import revoke_one

EXCHANGE_CODE_LIFETIME = timedelta(seconds=60)  # fixed by the contract


def exchange_hash(app_secret: str, code: str) -> str:
    return keyed_hash(app_secret, "exchange", code)


def create_exchange_code(server: AuthServer, ctx: RequestContext, data: dict) -> dict:
    """Mint a code (256 random bits) bound to the caller's organization and mode."""
    code = "exc_" + secrets.token_urlsafe(32)
    now = server.clock()
    row = ExchangeCode(code_hash=exchange_hash(server.app_secret, code), organization_id=ctx.organization_id,
                       mode=ctx.mode, provider=data["provider"], issuer=data["issuer"], subject=data["subject"],
                       claims=data.get("claims"), code_challenge=data.get("code_challenge"), created_at=now,
                       expires_at=now.replace(microsecond=0) + EXCHANGE_CODE_LIFETIME)
    with server.db.transaction() as session:
        session.add(row)
    return {"exchange_code": code, "expires_at": row.expires_at}


class ExternalExchangeGrant(BaseGrant):
    GRANT_TYPE = "external"
    SESSION_TYPE = "external"
    UPGRADES_GUEST = True

    def validate_token_request(self) -> None:
        """Nothing beyond the schema: the per-address limit is applied by the view."""

    def create_token_response(self) -> tuple[int, dict]:
        ctx, data, now = self.request.ctx, self.request.data, self.server.clock()
        code_hash = exchange_hash(self.server.app_secret, data["exchange_code"])
        outcome: str | None = None
        replayed: str | None = None
        finish: Callable[[], dict] | None = None
        with self.server.db.write() as connection:
            row = connection.execute(_SELECT_CODE, {"code_hash": code_hash}).first()
            for fallback in self.server.settings.app_secret_fallbacks if row is None else ():  # rotation: on a miss
                fallback_hash = exchange_hash(fallback, data["exchange_code"])
                row = connection.execute(_SELECT_CODE, {"code_hash": fallback_hash}).first()
                if row is not None:
                    break
            if row is None or row.organization_id != ctx.organization_id or row.mode != ctx.mode:
                outcome = "exchange_code_invalid"  # unknown, or another tenant's: no session, code untouched
            elif row.consumed_at is not None:
                # A replayed code has leaked (RFC 6749 §4.1.2): end the session it made.
                ended = (revoke_one(connection, self.server.events, row.session_id, "exchange_code_replayed", now)
                         if row.session_id else None)
                audit.record(connection, row.organization_id, row.mode, audit.SYSTEM, "exchange_code.replayed",
                             ("session", row.session_id) if row.session_id else None,
                             {"provider": row.provider, "sessionRevoked": bool(row.session_id)}, now)
                self.server.events.record(connection, ExchangeCodeReplayed(
                    organization_id=row.organization_id, mode=row.mode, session_id=row.session_id,
                    consumer_id=ended.consumer_id if ended else None))
                outcome = replayed = "exchange_code_invalid"
            elif row.expires_at <= now:
                outcome = "exchange_code_expired"
            elif row.code_challenge is None and data.get("code_verifier"):
                # PKCE downgrade (RFC 9700 §2.1.1): a verifier for a code issued without a challenge.
                raise ApiError("exchange_code_invalid", "This exchange code was issued without a codeChallenge: "
                                                        "send no codeVerifier.")
            elif row.code_challenge is not None and not (
                    data.get("code_verifier") and constant_time_equal(create_s256_code_challenge(data["code_verifier"]),
                                                                row.code_challenge)):
                raise ApiError("exchange_code_invalid", "The code verifier does not match this exchange code.")
            else:
                consumer_id = self._consumer(connection, row, now)
                session_row, finish = sign_in(self, connection, consumer_id, now)
                connection.execute(_CONSUME, {"code": row.code_hash, "now": now, "made_session": session_row.id})
        if replayed and row is not None:  # after the commit: the session it made is revoked
            security_event("exchange_code_replayed", session=row.session_id, org=row.organization_id)
        if outcome:
            raise ApiError(outcome)
        assert finish is not None  # no failed outcome: the session was made
        return 200, finish()

    def _consumer(self, connection, row, now) -> str:
        """The consumer of (provider, issuer, subject), created on first use; latest claims win.

        Email or phone in the claims are kept on the identity only: they never merge consumers."""
        triple = {"organization_id": row.organization_id, "mode": row.mode, "provider": row.provider,
                  "issuer": row.issuer, "subject": row.subject}
        identity = connection.execute(_FIND_IDENTITY, triple).first()
        if identity is None:
            consumer_id = insert_consumer(connection, self.server.events, "cons", row.organization_id, row.mode, now)
            connection.execute(_INSERT_IDENTITY, {**triple, "consumer_id": consumer_id, "claims": row.claims or {},
                                                  "created_at": now, "updated_at": now})
            return consumer_id
        if row.claims is not None:
            connection.execute(_UPDATE_CLAIMS, {"identity_id": identity.id, "claims": row.claims, "now": now})
        return identity.consumer_id


_CODES = ExchangeCode.__table__
_IDENTITIES = ExternalIdentity.__table__
_SELECT_CODE = select(_CODES).where(_CODES.c.code_hash == bindparam("code_hash")).with_for_update()
_CONSUME = (update(_CODES).where(_CODES.c.code_hash == bindparam("code"))
            .values(consumed_at=bindparam("now"), session_id=bindparam("made_session")))
_FIND_IDENTITY = select(_IDENTITIES.c.id, _IDENTITIES.c.consumer_id).where(
    *(_IDENTITIES.c[name] == bindparam(name) for name in ("organization_id", "mode", "provider", "issuer", "subject")))
_INSERT_IDENTITY = insert(_IDENTITIES)
_UPDATE_CLAIMS = (update(_IDENTITIES).where(_IDENTITIES.c.id == bindparam("identity_id"))
                  .values(claims=bindparam("claims"), updated_at=bindparam("now")))
