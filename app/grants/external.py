"""External authentication: a merchant's server vouches for a shopper (authorize), the
shopper's browser trades the code for a session (exchange).

The code is an authorization code in all but name: single use (a replay ends the session it
made, RFC 6749 §4.1.2), short-lived, bound to one tenant, and with a `codeChallenge` bound to
its verifier (PKCE, RFC 7636 S256). This module is that policy; the exchange store
(`app.stores.exchange`) keeps the codes and makes each exchange one locked transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from app.errors import ApiError
from app.grants.base import AuthServer, BaseGrant
from app.grants.identified import sign_in
from app.models import ExchangeCode
from app.security.callers import RequestContext
from app.security.keys import constant_time_equal, keyed_hash

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
    server.stores.exchange.issue(row)
    return {"exchange_code": code, "expires_at": row.expires_at}


class ExternalExchangeGrant(BaseGrant):
    GRANT_TYPE = "external"
    SESSION_TYPE = "external"
    UPGRADES_GUEST = True

    def validate_token_request(self) -> None:
        """Nothing beyond the schema: the per-address limit is applied by the view."""

    def create_token_response(self) -> tuple[int, dict]:
        ctx, data, now, server = self.request.ctx, self.request.data, self.server.clock(), self.server
        # APP_SECRET's hash first, each fallback's only on a miss (an APP_SECRET rotation)
        hashes = (exchange_hash(secret, data["exchange_code"])
                  for secret in (server.app_secret, *server.settings.app_secret_fallbacks))
        outcome: str | None = None
        replayed = False
        finish: Callable[[], dict] | None = None
        with server.stores.exchange.redeem(hashes) as redemption:
            code = redemption.code
            if code is None or code.organization_id != ctx.organization_id or code.mode != ctx.mode:
                outcome = "exchange_code_invalid"  # unknown, or another tenant's: no session, code untouched
            elif code.consumed_at is not None:
                redemption.replayed(now)  # a replayed code has leaked: the session it made ends
                outcome, replayed = "exchange_code_invalid", True
            elif code.expires_at <= now:
                outcome = "exchange_code_expired"
            elif code.code_challenge is None and data.get("code_verifier"):
                # PKCE downgrade (RFC 9700 §2.1.1): a verifier for a code issued without a challenge.
                raise ApiError("exchange_code_invalid", "This exchange code was issued without a codeChallenge: "
                                                        "send no codeVerifier.")
            elif code.code_challenge is not None and not (
                    data.get("code_verifier") and constant_time_equal(create_s256_code_challenge(data["code_verifier"]),
                                                                code.code_challenge)):
                raise ApiError("exchange_code_invalid", "The code verifier does not match this exchange code.")
            else:
                organization_id, mode = code.organization_id, code.mode
                consumer_id = redemption.consumer(now, lambda: server.stores.sign_in.create_consumer(
                    redemption.connection, organization_id, mode, now))
                session_row, finish = sign_in(self, redemption.connection, consumer_id, now)
                redemption.consume(session_row.id, now)
        if replayed and code is not None:  # after the commit: the session it made is revoked
            self.server.metrics.security_event("exchange_code_replayed", session=code.session_id,
                                               org=code.organization_id)
        if outcome:
            raise ApiError(outcome)
        assert finish is not None  # no failed outcome: the session was made
        return 200, finish()
