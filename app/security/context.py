"""Resolve the caller of a request, once, into a `RequestContext` on `flask.g`.

Every protected view goes through `authenticate`; nothing else reads credentials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from functools import wraps

from flask import current_app, g, request
from sqlalchemy import select, update

from app.db import utcnow
from app.errors import AUTHENTICATION_REQUIRED, SECRET_KEY_REQUIRED, ApiError
from app.models import ApiKey, AuthSession, Organization
from app.openapi import Blueprint
from app.security.keys import constant_time_equal, key_lookup, parse_key
from app.tokens.service import ACCESS, TokenError

LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass
class RequestContext:
    organization: Organization
    mode: str
    key_type: str
    key_id: str
    consumer_id: str | None = None
    session_id: str | None = None
    claims: dict = field(default_factory=dict)
    # A plain copy: readable after a failed transaction has expired the ORM object (access log).
    organization_id: str = field(init=False)

    def __post_init__(self) -> None:
        self.organization_id = self.organization.id


def unauthenticated() -> ApiError:
    return ApiError(AUTHENTICATION_REQUIRED)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def resolve_key(value: str, expected_type: str) -> RequestContext | None:
    """The caller of a key value, or None for a malformed, unknown, expired or revoked key."""
    parsed = parse_key(value)
    if parsed is None or parsed[0] != expected_type:
        return None
    key_type, mode = parsed
    lookup = key_lookup(current_app.config["APP_SECRET"], key_type, value)
    session = current_app.extensions["usher"].session()
    row = session.execute(
        select(ApiKey, Organization).join(Organization, Organization.id == ApiKey.organization_id)
        .where(ApiKey.lookup == lookup)
    ).first()
    now = utcnow()
    if row is None:
        return None
    key, organization = row
    if (not constant_time_equal(key.lookup, lookup) or key.type != key_type or key.mode != mode
            or key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now)):
        return None
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        # Recorded at most once a minute per key, so the hot path stays read-only.
        usher = current_app.extensions["usher"]
        with usher.db.transaction(session) as tx:
            tx.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    return RequestContext(organization=organization, mode=mode, key_type=key_type, key_id=key.id)


def _load_key(value: str, expected_type: str) -> RequestContext:
    ctx = resolve_key(value, expected_type)
    if ctx is None:
        raise unauthenticated()
    return ctx


def authenticate(kind: str) -> RequestContext:
    """Resolve the caller for a view that needs `kind`.

    - publishable: `X-Publishable-Key`;
    - secret: `Authorization: Bearer sk_…`;
    - access: the publishable key and a consumer access token of the same organization and mode;
    - token: a consumer access token, with the publishable key optional (seed's logout).
    """
    if kind == "secret":
        ctx = _secret_caller()
    elif kind == "publishable":
        ctx = _publishable_caller()
    elif kind == "access":
        ctx = _consumer_caller(_publishable_caller())
    elif kind == "token":
        ctx = _consumer_caller(_publishable_caller() if request.headers.get("X-Publishable-Key") else None)
    else:
        raise ValueError(kind)
    g.usher_ctx = ctx
    return ctx


def _consumer_caller(key_ctx: RequestContext | None) -> RequestContext:
    """Verify the bearer access token, then check that its session is still live."""
    token = _bearer()
    if token is None:
        raise unauthenticated()
    usher = current_app.extensions["usher"]
    try:
        claims = usher.auth.tokens.verify(token, ACCESS, key_ctx.organization_id if key_ctx else None,
                                          key_ctx.mode if key_ctx else None)
    except TokenError:
        raise unauthenticated() from None
    session = usher.session()
    live = session.execute(
        select(AuthSession.id).where(AuthSession.id == claims["sessionId"], AuthSession.revoked_at.is_(None),
                                     AuthSession.consumer_id == claims["consumerId"],
                                     AuthSession.organization_id == claims["organizationId"])
    ).first()
    if live is None:
        raise unauthenticated()
    if key_ctx is None:
        organization = session.get(Organization, claims["organizationId"])
        if organization is None:
            raise unauthenticated()
        key_ctx = RequestContext(organization=organization, mode=claims["mode"], key_type="token", key_id="")
    key_ctx.consumer_id = claims["consumerId"]
    key_ctx.session_id = claims["sessionId"]
    key_ctx.claims = claims
    return key_ctx


def _publishable_caller() -> RequestContext:
    value = request.headers.get("X-Publishable-Key")
    if not value:
        raise unauthenticated()
    return _load_key(value, "publishable")


def _secret_caller() -> RequestContext:
    token = _bearer()
    if token is not None and token.startswith("sk_"):
        return _load_key(token, "secret")
    # A valid consumer credential on a server endpoint: say which credential is needed.
    if token is not None and token.startswith("pk_"):
        _load_key(token, "publishable")
        raise ApiError(SECRET_KEY_REQUIRED)
    if request.headers.get("X-Publishable-Key"):
        _publishable_caller()
        raise ApiError(SECRET_KEY_REQUIRED)
    raise unauthenticated()


def guest_caller(ctx: RequestContext) -> str | None:
    """The guest upgrading itself, when a sign-in carries a guest's access token.

    No token: None. A token that is not a live guest token of this tenant: 401.
    """
    if _bearer() is None:
        return None
    consumer = _consumer_caller(RequestContext(organization=ctx.organization, mode=ctx.mode,
                                               key_type=ctx.key_type, key_id=ctx.key_id))
    if not consumer.consumer_id.startswith("guest_"):
        raise unauthenticated()
    return consumer.consumer_id


def current_context() -> RequestContext:
    return g.usher_ctx


SECURITY_REQUIREMENTS = {
    "publishable": [{"publishableKey": []}],
    "secret": [{"secretKey": []}],
    "access": [{"publishableKey": [], "accessToken": []}],
    "token": [{"accessToken": []}],
}


def requires(*kinds: str):
    """Decorator: the view needs one of these credentials, resolved before it runs.

    With several kinds, a secret key in `Authorization` selects "secret", else the first other.
    Also marks the operation in the OpenAPI document so that Swagger UI's Authorize works.
    """

    def choose() -> str:
        if len(kinds) > 1 and "secret" in kinds:
            token = _bearer()
            if token is not None and token.startswith("sk_"):
                return "secret"
            return next(kind for kind in kinds if kind != "secret")
        return kinds[0]

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            authenticate(choose())
            return view(*args, **kwargs)

        security = [req for kind in kinds for req in SECURITY_REQUIREMENTS[kind]]
        return Blueprint.doc(security=security)(wrapper)

    return decorator
