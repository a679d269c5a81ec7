"""The grant contract and the server that holds the registry of enabled grants.

Mirrors Authlib's `AuthorizationServer.register_grant` / `validate_token_request` /
`create_token_response`, but speaks JSON and our error envelope. A grant is one file: a
`BaseGrant` subclass that declares what it is (`GRANT_TYPE`, `SESSION_TYPE`,
`UPGRADES_GUEST`) and implements the two verbs; its view routes to it with
`app.api.consumer.grant_endpoint`. Grants never read `flask.request`: everything they need
from the HTTP request is in `TokenRequest`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from app.config import Settings
from app.db import Database
from app.errors import AUTHENTICATION_REQUIRED, ApiError
from app.metrics import Metrics
from app.ratelimit import RateLimits
from app.security.callers import CallerResolver, RequestContext
from app.security.credentials import Credentials
from app.services.events import Events
from app.stores import Stores
from app.tokens.service import Kids, TokenService


@dataclass(frozen=True)
class TokenRequest:
    """What a grant may know of the HTTP request (as Authlib's `OAuth2Request`)."""

    ctx: RequestContext
    data: dict = field(default_factory=dict)
    client_ip: str = "unknown"
    credentials: Credentials = field(default_factory=Credentials)


class BaseGrant:
    """One login method. Subclasses set the class attributes and implement the two verbs."""

    GRANT_TYPE: ClassVar[str]
    #: `session.type` of the sessions it makes (`guest`, `otp`, `external`); None if it makes none.
    SESSION_TYPE: ClassVar[str | None] = None
    #: Whether a guest's access token on the request upgrades that guest (see `sign_in`).
    UPGRADES_GUEST: ClassVar[bool] = False

    def __init__(self, server: AuthServer, request: TokenRequest):
        self.server = server
        self.request = request
        #: The verified claims of the guest token that upgrades, set by the server when allowed.
        self.guest_claims: dict | None = None
        #: The signing keys of the pair this grant will issue (access, refresh), read before any
        #: transaction.
        self.kids: Kids = Kids("", "")

    @property
    def guest_id(self) -> str | None:
        return self.guest_claims["consumerId"] if self.guest_claims else None

    def __init_subclass__(cls, **kwargs):
        """A grant that forgets to name itself fails at import, not at its first request."""
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "GRANT_TYPE", None):
            raise TypeError(f"{cls.__name__} must set GRANT_TYPE")

    def validate_token_request(self) -> None:
        """Check the request; raise a catalogued ApiError if it cannot succeed. (Rate limits are
        applied by the views, the one layer that applies them: see `app.ratelimit`.)"""
        raise NotImplementedError

    def create_token_response(self) -> tuple[int, dict]:
        """Persist what the flow makes and return (status, body); the body in wire form
        (camelCase, instants as ISO strings), as the view's response schema writes it."""
        raise NotImplementedError


class AuthServer:
    """What every grant needs (database, tokens, limits, settings, clock, the events outbox) and the registry."""

    def __init__(self, db: Database, tokens: TokenService, limits: RateLimits, settings: Settings,
                 callers: CallerResolver, clock: Callable[[], datetime], events: Events, stores: Stores,
                 metrics: Metrics):
        self.db = db
        self.tokens = tokens
        self.limits = limits
        self.settings = settings
        self.callers = callers
        self.app_secret: str = settings.app_secret
        self.clock = clock
        #: The webhook outbox: grants record their events through it, in their transaction.
        self.events = events
        #: The persistence of the aggregates a grant changes (`app.stores`): grants hold no SQL.
        self.stores = stores
        #: Counts and logs the security events a grant detects (reuse, replay).
        self.metrics = metrics
        self._grants: dict[str, type[BaseGrant]] = {}

    def register_grant(self, grant_cls: type[BaseGrant]) -> None:
        self._grants[grant_cls.GRANT_TYPE] = grant_cls

    def enabled(self, grant_type: str) -> bool:
        return grant_type in self._grants

    def create_token_response(self, grant_type: str, request: TokenRequest) -> tuple[int, dict]:
        grant_cls = self._grants.get(grant_type)
        if grant_cls is None:  # unrouted when disabled; a direct call is a caller's bug
            raise ApiError("not_found")
        grant = grant_cls(self, request)
        grant.validate_token_request()
        if grant.UPGRADES_GUEST and request.credentials.bearer is not None:
            # A guest signing in: the token must be a valid guest access token of this tenant.
            # Whether its session is still live is decided inside the grant's write transaction.
            claims = self.callers.access_claims(request.credentials.bearer, request.ctx.organization_id,
                                                request.ctx.mode)
            if not claims["consumerId"].startswith("guest_"):
                raise ApiError(AUTHENTICATION_REQUIRED)
            grant.guest_claims = claims
        if grant.SESSION_TYPE is not None:
            grant.kids = self.tokens.current_kids()
        return grant.create_token_response()
