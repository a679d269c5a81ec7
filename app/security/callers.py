"""Who is calling: resolve presented credentials into a `RequestContext`, in one query.

No Flask here: `CallerResolver` is built per app in `create_app` and given the request's
`Credentials` and read connection by the view decorator (`app.api.security.requires`), by the
OAuth endpoints, or by a test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, literal, select, update

from app.db import Database
from app.errors import AUTHENTICATION_REQUIRED, SECRET_KEY_REQUIRED, ApiError
from app.models import ApiKey, AuthSession, Organization, OrganizationSettings
from app.security.credentials import CredentialKind, Credentials
from app.security.keys import constant_time_equal, key_lookup, parse_key
from app.security.scopes import key_scopes
from app.tokens.service import ACCESS, TokenError, TokenService

LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class OrganizationSnapshot:
    """The caller's organization as read with its key: its id, name and the settings of the
    caller's mode."""

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
    allowed_origins: list[str]
    sms_allowed_countries: list[str]
    sms_per_hour: int


@dataclass
class RequestContext:
    organization: OrganizationSnapshot
    mode: str
    key_type: str
    key_id: str
    consumer_id: str | None = None
    session_id: str | None = None
    claims: dict = field(default_factory=dict)
    #: What the key may do (`app.security.scopes`): every scope for a secret key, none for a
    #: publishable key or a consumer, its own list for a restricted key.
    scopes: frozenset[str] = frozenset()

    @property
    def organization_id(self) -> str:
        return self.organization.id


_ORG = Organization.__table__.c
_SETTINGS = OrganizationSettings.__table__.c
_KEY = ApiKey.__table__.c
_SESSION = AuthSession.__table__.c
_ORG_COLUMNS = [_ORG.id, _ORG.name, *(getattr(_SETTINGS, name) for name in OrganizationSnapshot.__dataclass_fields__
                                      if name not in ("id", "name"))]
# Built once: the hot path only binds parameters (SQLAlchemy caches the compiled SQL too).
_KEY_ROW = (select(_KEY.id.label("key_id"), _KEY.lookup, _KEY.type, _KEY.mode, _KEY.expires_at, _KEY.revoked_at,
                   _KEY.last_used_at, _KEY.scopes, *_ORG_COLUMNS)
            .join_from(ApiKey.__table__, Organization.__table__, _ORG.id == _KEY.organization_id)
            .join(OrganizationSettings.__table__,
                  (_SETTINGS.organization_id == _ORG.id) & (_SETTINGS.mode == _KEY.mode)))
_KEY_QUERY = _KEY_ROW.where(_KEY.lookup == bindparam("lookup"))
_KEY_BY_ID_QUERY = _KEY_ROW.where(_KEY.id == bindparam("key_id"))
_LIVE_SESSION = (select(literal(1)).where(_SESSION.id == bindparam("session_id"), _SESSION.revoked_at.is_(None),
                                           _SESSION.consumer_id == bindparam("consumer_id"),
                                           _SESSION.organization_id == _ORG.id).exists().label("session_live"))
_KEY_AND_SESSION_QUERY = _KEY_QUERY.add_columns(_LIVE_SESSION)
_ORG_AND_SESSION_QUERY = (select(*_ORG_COLUMNS, _LIVE_SESSION)
                          .join_from(Organization.__table__, OrganizationSettings.__table__,
                                     (_SETTINGS.organization_id == _ORG.id) & (_SETTINGS.mode == bindparam("mode")))
                          .where(_ORG.id == bindparam("organization_id")))
_ORG_QUERY = _ORG_AND_SESSION_QUERY.with_only_columns(*_ORG_COLUMNS)
_TOUCH_KEY = update(ApiKey.__table__).where(_KEY.id == bindparam("key_id")).values(last_used_at=bindparam("now"))


def unauthenticated() -> ApiError:
    return ApiError(AUTHENTICATION_REQUIRED)


def _snapshot(row) -> OrganizationSnapshot:
    return OrganizationSnapshot(*(row._mapping[column.name] for column in _ORG_COLUMNS))


def organization_snapshot(connection: Connection, organization_id: str, mode: str) -> OrganizationSnapshot:
    """The organization with the settings of one mode, outside a request (CLI, benchmarks, tests)."""
    return _snapshot(connection.execute(_ORG_QUERY, {"organization_id": organization_id, "mode": mode}).first())


class CallerResolver:
    """Turns credentials into the caller. Keys are looked up by keyed hash and compared in
    constant time; an access token is verified offline first, then its session's liveness is
    read in the same query as the key."""

    def __init__(self, db: Database, tokens: TokenService, app_secret: str, clock: Callable[[], datetime]):
        self.db = db
        self.tokens = tokens
        self.app_secret = app_secret
        self.clock = clock

    # -- keys ---------------------------------------------------------------------------------
    def resolve_key(self, reader: Connection, value: str, expected_type: str,
                    session_claims: dict | None = None) -> RequestContext | None:
        """The caller of a key value, or None for a malformed, unknown, expired or revoked key.

        With `session_claims` (a verified access token's), the same single query also tells
        whether the token's session is live; a dead session resolves to None as well."""
        parsed = parse_key(value)
        if parsed is None or parsed[0] != expected_type:
            return None
        key_type, mode = parsed
        lookup = key_lookup(self.app_secret, key_type, value)
        params = {"lookup": lookup}
        if session_claims is not None:
            params.update(session_id=session_claims["sessionId"], consumer_id=session_claims["consumerId"])
        row = reader.execute(_KEY_QUERY if session_claims is None else _KEY_AND_SESSION_QUERY, params).first()
        if row is None or not constant_time_equal(row.lookup, lookup) or row.type != key_type or row.mode != mode:
            return None
        if session_claims is not None and not row.session_live:
            return None
        return self._caller_of(row)

    def resolve_key_id(self, reader: Connection, key_id: str) -> RequestContext | None:
        """The caller of a key known by id (the dashboard's session refers to its key this way),
        under the same rule as a presented value: None once it is revoked or expired."""
        row = reader.execute(_KEY_BY_ID_QUERY, {"key_id": key_id}).first()
        return None if row is None else self._caller_of(row)

    def _caller_of(self, row) -> RequestContext | None:
        """The one validity rule of a key row (revoked or expired: no caller), and the
        last-used stamp."""
        now = self.clock()
        if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
            return None
        if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
            # The one write on the read path, at most once a minute per key.
            with self.db.write() as connection:
                connection.execute(_TOUCH_KEY, {"key_id": row.key_id, "now": now})
        return RequestContext(organization=_snapshot(row), mode=row.mode, key_type=row.type, key_id=row.key_id,
                              scopes=key_scopes(row.type, row.scopes))

    def _key(self, reader: Connection, value: str | None, expected_type: str,
             session_claims: dict | None = None) -> RequestContext:
        ctx = self.resolve_key(reader, value or "", expected_type, session_claims)
        if ctx is None:
            raise unauthenticated()
        return ctx

    # -- access tokens ------------------------------------------------------------------------
    def access_claims(self, bearer: str | None, organization_id: str | None, mode: str | None) -> dict:
        """The claims of a valid access token (no database), else 401."""
        if bearer is None:
            raise unauthenticated()
        try:
            return self.tokens.verify(bearer, ACCESS, organization_id, mode)
        except TokenError:
            raise unauthenticated() from None

    def session_is_live(self, reader: Connection, organization_id: str, claims: dict) -> OrganizationSnapshot | None:
        """The organization, if the token's session is live in it (one query); else None."""
        row = reader.execute(_ORG_AND_SESSION_QUERY, {"organization_id": organization_id, "mode": claims["mode"],
                                                      "session_id": claims["sessionId"],
                                                      "consumer_id": claims["consumerId"]}).first()
        return _snapshot(row) if row is not None and row.session_live else None

    # -- callers ------------------------------------------------------------------------------
    def resolve(self, reader: Connection, kind: CredentialKind, credentials: Credentials) -> RequestContext:
        """The caller for a view that needs `kind` (see `CredentialKind`), else 401/403."""
        if kind is CredentialKind.SECRET:
            return self._secret_caller(reader, credentials)
        if kind is CredentialKind.PUBLISHABLE:
            return self._key(reader, credentials.publishable_key, "publishable")
        if kind is CredentialKind.ACCESS or (kind is CredentialKind.TOKEN and credentials.publishable_key):
            return self._consumer_with_key(reader, credentials)
        if kind is CredentialKind.TOKEN:
            return self._consumer_by_token(reader, credentials)
        raise ValueError(kind)

    def _consumer_with_key(self, reader: Connection, credentials: Credentials) -> RequestContext:
        """Verify the access token (no database), then resolve the publishable key and the
        token's session liveness in one query."""
        parsed = parse_key(credentials.publishable_key or "")
        if parsed is None or parsed[0] != "publishable":
            raise unauthenticated()
        claims = self.access_claims(credentials.bearer, None, parsed[1])
        ctx = self._key(reader, credentials.publishable_key, "publishable", claims)
        if claims["organizationId"] != ctx.organization_id:
            raise unauthenticated()
        return self._as_consumer(ctx, claims)

    def _consumer_by_token(self, reader: Connection, credentials: Credentials) -> RequestContext:
        """Without a publishable key (the seed's logout) the organization comes from the token."""
        claims = self.access_claims(credentials.bearer, None, None)
        organization = self.session_is_live(reader, claims["organizationId"], claims)
        if organization is None:
            raise unauthenticated()
        return self._as_consumer(RequestContext(organization=organization, mode=claims["mode"],
                                                key_type="token", key_id=""), claims)

    @staticmethod
    def _as_consumer(ctx: RequestContext, claims: dict) -> RequestContext:
        ctx.consumer_id, ctx.session_id, ctx.claims = claims["consumerId"], claims["sessionId"], claims
        return ctx

    def _secret_caller(self, reader: Connection, credentials: Credentials) -> RequestContext:
        bearer = credentials.bearer
        if bearer is not None and bearer.startswith("sk_"):
            return self._key(reader, bearer, "secret")
        if bearer is not None and bearer.startswith("rk_"):
            return self._key(reader, bearer, "restricted")
        # A valid consumer credential on a server endpoint: say which credential is needed.
        if bearer is not None and bearer.startswith("pk_"):
            self._key(reader, bearer, "publishable")
            raise ApiError(SECRET_KEY_REQUIRED)
        if credentials.publishable_key:
            self._key(reader, credentials.publishable_key, "publishable")
            raise ApiError(SECRET_KEY_REQUIRED)
        raise unauthenticated()
