"""External authentication: a merchant's server vouches for a shopper (authorize), the
shopper's browser trades the code for a session (exchange)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select

from app.errors import ApiError
from app.grants.base import AuthServer, BaseGrant
from app.grants.identified import sign_in
from app.models import AuthSession, Consumer, ExchangeCode, ExternalIdentity, new_id
from app.ratelimit import client_ip
from app.security.context import RequestContext, guest_caller
from app.security.keys import constant_time_equal, keyed_hash
from app.services.sessions import revoke

EXCHANGE_CODE_LIFETIME = timedelta(seconds=60)  # fixed by the contract


def exchange_hash(app_secret: str, code: str) -> str:
    return keyed_hash(app_secret, "exchange", code)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


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

    def validate_token_request(self) -> None:
        ctx = self.request.ctx
        self.server.limits.hit("exchange_ip", self.server.config["EXCHANGE_RATE_LIMIT"], ctx.organization_id,
                               client_ip())
        self.guest_id = guest_caller(ctx)
        self.kid = self.server.tokens.keyring.current().kid

    def create_token_response(self) -> tuple[int, dict]:
        ctx, data = self.request.ctx, self.request.data
        code_hash = exchange_hash(self.server.app_secret, data["exchange_code"])
        outcome = None
        with self.server.db.transaction(self.request.session) as tx:
            row = tx.scalar(select(ExchangeCode).where(ExchangeCode.code_hash == code_hash).with_for_update())
            if row is None or row.organization_id != ctx.organization_id or row.mode != ctx.mode:
                outcome = "exchange_code_invalid"  # unknown, or another tenant's: no session, code untouched
            elif row.consumed_at is not None:
                # A replayed code has leaked (RFC 6749 §4.1.2): end the session it made.
                if row.session_id:
                    revoke(tx, "exchange_code_replayed", AuthSession.id == row.session_id)
                outcome = "exchange_code_invalid"
            elif row.expires_at <= self.server.clock():
                outcome = "exchange_code_expired"
            elif row.code_challenge is not None and not (
                    data.get("code_verifier") and constant_time_equal(s256(data["code_verifier"]), row.code_challenge)):
                raise ApiError("exchange_code_invalid", "The code verifier does not match this exchange code.")
            else:
                row.consumed_at = self.server.clock()
                consumer = self._consumer(tx, row)
                body = sign_in(self, tx, {}, consumer=consumer)
                row.session_id = body["session"]["session_id"]
        if outcome:
            raise ApiError(outcome)
        return 200, body

    def _consumer(self, session, row: ExchangeCode) -> Consumer:
        """The consumer of (provider, issuer, subject), created on first use; latest claims win.

        Email or phone in the claims are kept on the identity only: they never merge consumers."""
        identity = session.scalar(select(ExternalIdentity).where(
            ExternalIdentity.organization_id == row.organization_id, ExternalIdentity.mode == row.mode,
            ExternalIdentity.provider == row.provider, ExternalIdentity.issuer == row.issuer,
            ExternalIdentity.subject == row.subject))
        now = self.server.clock()
        if identity is None:
            consumer = Consumer(id=new_id("cons"), organization_id=row.organization_id, mode=row.mode, created_at=now)
            session.add(consumer)
            session.flush()
            session.add(ExternalIdentity(organization_id=row.organization_id, mode=row.mode, consumer_id=consumer.id,
                                         provider=row.provider, issuer=row.issuer, subject=row.subject,
                                         claims=row.claims or {}, created_at=now, updated_at=now))
            return consumer
        if row.claims is not None:
            identity.claims, identity.updated_at = row.claims, now
        return session.get(Consumer, identity.consumer_id)
