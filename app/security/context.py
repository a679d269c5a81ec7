"""Resolve the caller of a request, once, into a `RequestContext` on `flask.g`.

Every protected view goes through `authenticate`; nothing else reads credentials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from functools import wraps

from flask import current_app, g, request
from sqlalchemy import bindparam, literal, select, update

from app.db import utcnow
from app.errors import AUTHENTICATION_REQUIRED, SECRET_KEY_REQUIRED, ApiError
from app.models import ApiKey, AuthSession, Organization
from app.openapi import Blueprint
from app.security.keys import constant_time_equal, key_lookup, parse_key
from app.tokens.service import ACCESS, TokenError

LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class OrganizationSnapshot:
    """The caller's organization as read with its key: its id, name and settings."""

    id: str
    name: str
    access_token_ttl: int
    refresh_token_ttl: int
    otp_ttl: int
    otp_length: int
    otp_cooldown: int
    otp_requests_per_hour: int
    otp_requests_per_ip_per_hour: int
    otp_verifies_per_ip_per_hour: int


_ORG = Organization.__table__.c
_KEY = ApiKey.__table__.c
_SESSION = AuthSession.__table__.c
_ORG_COLUMNS = [getattr(_ORG, name) for name in OrganizationSnapshot.__dataclass_fields__]
# Built once: the hot path only binds parameters (SQLAlchemy caches the compiled SQL too).
_KEY_QUERY = (select(_KEY.id.label("key_id"), _KEY.lookup, _KEY.type, _KEY.mode, _KEY.expires_at, _KEY.revoked_at,
                     _KEY.last_used_at, *_ORG_COLUMNS)
              .join_from(ApiKey.__table__, Organization.__table__, _ORG.id == _KEY.organization_id)
              .where(_KEY.lookup == bindparam("lookup")))
_LIVE_SESSION = (select(literal(1)).where(_SESSION.id == bindparam("session_id"), _SESSION.revoked_at.is_(None),
                                           _SESSION.consumer_id == bindparam("consumer_id"),
                                           _SESSION.organization_id == _ORG.id).exists().label("session_live"))
_KEY_AND_SESSION_QUERY = _KEY_QUERY.add_columns(_LIVE_SESSION)
_ORG_AND_SESSION_QUERY = select(*_ORG_COLUMNS, _LIVE_SESSION).where(_ORG.id == bindparam("organization_id"))
_TOUCH_KEY = update(ApiKey.__table__).where(_KEY.id == bindparam("key_id")).values(last_used_at=bindparam("now"))


@dataclass
class RequestContext:
    organization: OrganizationSnapshot
    mode: str
    key_type: str
    key_id: str
    consumer_id: str | None = None
    session_id: str | None = None
    claims: dict = field(default_factory=dict)

    @property
    def organization_id(self) -> str:
        return self.organization.id


def unauthenticated() -> ApiError:
    return ApiError(AUTHENTICATION_REQUIRED)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _snapshot(row) -> OrganizationSnapshot:
    return OrganizationSnapshot(*(row._mapping[column.name] for column in _ORG_COLUMNS))


def resolve_key(value: str, expected_type: str, session_claims: dict | None = None) -> RequestContext | None:
    """The caller of a key value, or None for a malformed, unknown, expired or revoked key.

    With `session_claims` (a verified access token's), the same single query also tells whether
    the token's session is live; a dead session resolves to None as well."""
    parsed = parse_key(value)
    if parsed is None or parsed[0] != expected_type:
        return None
    key_type, mode = parsed
    lookup = key_lookup(current_app.config["APP_SECRET"], key_type, value)
    usher = current_app.extensions["usher"]
    params = {"lookup": lookup}
    if session_claims is not None:
        params.update(session_id=session_claims["sessionId"], consumer_id=session_claims["consumerId"])
    row = usher.reader().execute(_KEY_QUERY if session_claims is None else _KEY_AND_SESSION_QUERY, params).first()
    now = utcnow()
    if row is None:
        return None
    if (not constant_time_equal(row.lookup, lookup) or row.type != key_type or row.mode != mode
            or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now)):
        return None
    if session_claims is not None and not row.session_live:
        return None
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        # Recorded at most once a minute per key, so the hot path stays read-only.
        with usher.db.write() as connection:
            connection.execute(_TOUCH_KEY, {"key_id": row.key_id, "now": now})
    return RequestContext(organization=_snapshot(row), mode=mode, key_type=key_type, key_id=row.key_id)


def _load_key(value: str, expected_type: str, session_claims: dict | None = None) -> RequestContext:
    ctx = resolve_key(value, expected_type, session_claims)
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
        ctx = _consumer_caller(with_publishable_key=True)
    elif kind == "token":
        ctx = _consumer_caller(with_publishable_key=bool(request.headers.get("X-Publishable-Key")))
    else:
        raise ValueError(kind)
    g.usher_ctx = ctx
    return ctx


def _verified_access_claims(key_mode: tuple[str, str] | None) -> dict:
    token = _bearer()
    if token is None:
        raise unauthenticated()
    try:
        return current_app.extensions["usher"].auth.tokens.verify(token, ACCESS, *(key_mode or (None, None)))
    except TokenError:
        raise unauthenticated() from None


def _consumer_caller(with_publishable_key: bool) -> RequestContext:
    """Verify the bearer access token (no database), then resolve the publishable key and the
    token's session liveness in one query. Without a publishable key (the seed's logout), the
    organization comes from the verified token."""
    value = request.headers.get("X-Publishable-Key", "") if with_publishable_key else ""
    if with_publishable_key:
        parsed = parse_key(value)
        if parsed is None or parsed[0] != "publishable":
            raise unauthenticated()
        claims = _verified_access_claims((None, parsed[1]))
        ctx = _load_key(value, "publishable", claims)
        if claims["organizationId"] != ctx.organization_id:
            raise unauthenticated()
    else:
        claims = _verified_access_claims(None)
        row = current_app.extensions["usher"].reader().execute(_ORG_AND_SESSION_QUERY, {
            "organization_id": claims["organizationId"], "session_id": claims["sessionId"],
            "consumer_id": claims["consumerId"]}).first()
        if row is None or not row.session_live:
            raise unauthenticated()
        ctx = RequestContext(organization=_snapshot(row), mode=claims["mode"], key_type="token", key_id="")
    ctx.consumer_id = claims["consumerId"]
    ctx.session_id = claims["sessionId"]
    ctx.claims = claims
    return ctx


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
    claims = _verified_access_claims((ctx.organization_id, ctx.mode))
    live = current_app.extensions["usher"].reader().execute(_ORG_AND_SESSION_QUERY, {
        "organization_id": ctx.organization_id, "session_id": claims["sessionId"],
        "consumer_id": claims["consumerId"]}).first()
    if live is None or not live.session_live or not claims["consumerId"].startswith("guest_"):
        raise unauthenticated()
    return claims["consumerId"]


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
