"""The grant base class and the server that holds the registry of enabled grants.

Mirrors Authlib's `AuthorizationServer.register_grant` / `validate_token_request` /
`create_token_response`, but speaks JSON and our error envelope (Authlib's token endpoint
reads form data and answers in the RFC 6749 error shape).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.db import Database, utcnow
from app.ratelimit import RateLimits
from app.security.context import RequestContext
from app.tokens.service import TokenService


@dataclass
class TokenRequest:
    ctx: RequestContext
    data: dict = field(default_factory=dict)


class BaseGrant:
    GRANT_TYPE: str = ""
    SESSION_TYPE: str | None = None

    def __init__(self, server: AuthServer, request: TokenRequest):
        self.server = server
        self.request = request

    def validate_token_request(self) -> None:
        """Check the request; raise a catalogued ApiError if it cannot succeed."""
        raise NotImplementedError

    def create_token_response(self) -> tuple[int, dict]:
        """Persist what the flow makes and return (status, body)."""
        raise NotImplementedError


class AuthServer:
    """What every grant needs (database, tokens, limits, config) and the registry of grants."""

    def __init__(self, db: Database, tokens: TokenService, limits: RateLimits, config: dict):
        self.db = db
        self.tokens = tokens
        self.limits = limits
        self.config = config
        self.app_secret: str = config["APP_SECRET"]
        self.clock = utcnow  # replaceable in tests
        self._grants: dict[str, type[BaseGrant]] = {}

    def register_grant(self, grant_cls: type[BaseGrant]) -> None:
        self._grants[grant_cls.GRANT_TYPE] = grant_cls

    def create_token_response(self, grant_type: str, request: TokenRequest) -> tuple[int, dict]:
        grant = self._grants[grant_type](self, request)
        grant.validate_token_request()
        return grant.create_token_response()
