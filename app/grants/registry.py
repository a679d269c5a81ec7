"""Build the auth server of one app with the grants its config enables."""

from __future__ import annotations

from app.db import Database
from app.grants.base import AuthServer, BaseGrant
from app.grants.external import ExternalExchangeGrant
from app.grants.guest import GuestGrant
from app.grants.otp import OtpGrant
from app.grants.refresh import RefreshTokenGrant
from app.ratelimit import RateLimits
from app.tokens.service import TokenService

AVAILABLE_GRANTS: dict[str, type[BaseGrant]] = {
    grant.GRANT_TYPE: grant for grant in (GuestGrant, RefreshTokenGrant, OtpGrant, ExternalExchangeGrant)
}


def build_auth_server(db: Database, tokens: TokenService, limits: RateLimits, config: dict) -> AuthServer:
    server = AuthServer(db, tokens, limits, config)
    enabled = config.get("ENABLED_GRANTS") or list(AVAILABLE_GRANTS)
    for name in enabled:
        server.register_grant(AVAILABLE_GRANTS[name])
    return server
