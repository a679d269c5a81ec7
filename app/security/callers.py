"""Who is calling: resolve presented credentials into a `RequestContext`, in one query.

No Flask here: `CallerResolver` is built per app in `create_app` and given the request's
`Credentials` and read connection by the API's request step (`app.api.security`), by the
OAuth endpoints, or by a test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain

from sqlalchemy import Connection, Row, bindparam, event, literal, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import Database
from app.errors import AUTHENTICATION_REQUIRED, SECRET_KEY_REQUIRED, ApiError
from app.models import ApiKey, AuthSession, Organization, OrganizationSettings
from app.security.credentials import CredentialKind, Credentials
from app.security.crypto import short_fingerprint
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
    bot_defense: str
    bot_defense_routes: list[str]
    bot_defense_site_key: str | None
    bot_defense_secret: bytes | None  # sealed
    altcha_complexity: str


@dataclass
class PendingSession:
    """An access token's session whose liveness is still to be read: a read-only view that asked
    for it (`requires(..., session_check="in_view")`) reads it in its own query (`LIVE_SESSION`)
    and reports it with `confirm`; whatever the view does, the request step reads it before any
    answer leaves (`CallerResolver.settle`)."""

    session_id: str
    consumer_id: str
    organization_id: str
    checked: bool = False

    def params(self) -> dict:
        """The bind parameters of `LIVE_SESSION`."""
        return {"live_session_id": self.session_id, "live_consumer_id": self.consumer_id,
                "organization_id": self.organization_id}

    def confirm(self, live: bool) -> None:
        """The view's query read the liveness: 401 for a dead session."""
        self.checked = True
        if not live:
            raise unauthenticated()


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
    #: Set when the view reads the token's session liveness itself (see `PendingSession`).
    pending_session: PendingSession | None = None

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


def _live_session(organization_id):
    """The one liveness rule of a token's session: not revoked, and its consumer and organization."""
    # (`live_…` binds: a view's query that adds this column may bind its own `consumer_id`.)
    return select(literal(1)).where(_SESSION.id == bindparam("live_session_id"), _SESSION.revoked_at.is_(None),
                                    _SESSION.consumer_id == bindparam("live_consumer_id"),
                                    _SESSION.organization_id == organization_id).exists()


_LIVE_SESSION = _live_session(_ORG.id).label("session_live")
#: The liveness rule as a column for a view's own query (binds live_session_id,
#: live_consumer_id, organization_id: `PendingSession.params`).
LIVE_SESSION = _live_session(bindparam("organization_id")).label("session_live")
_SESSION_LIVE_QUERY = select(LIVE_SESSION)  # with a cached key row
_KEY_AND_SESSION_QUERY = _KEY_QUERY.add_columns(_LIVE_SESSION)
_ORG_AND_SESSION_QUERY = (select(*_ORG_COLUMNS, _LIVE_SESSION)
                          .join_from(Organization.__table__, OrganizationSettings.__table__,
                                     (_SETTINGS.organization_id == _ORG.id) & (_SETTINGS.mode == bindparam("mode")))
                          .where(_ORG.id == bindparam("organization_id")))
_ORG_QUERY = _ORG_AND_SESSION_QUERY.with_only_columns(*_ORG_COLUMNS)
_TOUCH_KEY = update(ApiKey.__table__).where(_KEY.id == bindparam("key_id")).values(last_used_at=bindparam("now"))


#: Where a read connection comes from when one is needed (`Usher.reader`): a publishable key
#: found in the cache costs no connection at all.
Reader = Callable[[], Connection]


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
    read in the same query as the key.

    Publishable keys are public identifiers: a worker may reuse a publishable key's row for
    `publishable_key_cache_seconds` (at most 1 s), so a revoked key, or a settings change made
    by another process, takes effect within that time (an expiry is checked against the clock
    on every request, cached or not). A change committed through this process's ORM sessions
    empties the cache at once (`forget_on_change`). Secret and restricted keys, unknown keys and
    session liveness are read on every request."""

    def __init__(self, db: Database, tokens: TokenService, app_secret: str, clock: Callable[[], datetime],
                 publishable_key_cache_seconds: float = 0.0, fallbacks: Sequence[str] = ()):
        self.db = db
        self.tokens = tokens
        self.app_secret = app_secret
        self.fallbacks = tuple(fallbacks)
        self.clock = clock
        self.publishable_key_cache_seconds = publishable_key_cache_seconds
        self._cache_for = timedelta(seconds=publishable_key_cache_seconds)
        # lookup -> (reuse until, the key row, its organization snapshot): both read-only
        self._publishable: dict[str, tuple[datetime, Row, OrganizationSnapshot]] = {}
        self._touched: dict[str, datetime] = {}  # key id -> when this process last stamped last_used_at

    def forget_keys(self) -> None:
        self._publishable = {}

    def forget_on_change(self, factory: sessionmaker) -> None:
        """Empty the publishable-key cache when a transaction of `factory` that changed a key,
        an organization or its settings commits (admin API, dashboard, CLI in this process)."""
        watched = (ApiKey, Organization, OrganizationSettings)

        @event.listens_for(factory, "after_flush")
        def _changed(session: Session, _context) -> None:
            if any(isinstance(item, watched) for item in chain(session.new, session.dirty, session.deleted)):
                session.info["usher_keys_changed"] = True

        @event.listens_for(factory, "after_commit")
        def _committed(session: Session) -> None:
            if session.info.pop("usher_keys_changed", False):
                self.forget_keys()

        @event.listens_for(factory, "after_rollback")
        def _rolled_back(session: Session) -> None:
            session.info.pop("usher_keys_changed", None)

    def _cached(self, lookup: str) -> tuple[datetime, Row, OrganizationSnapshot] | None:
        entry = self._publishable.get(lookup)
        if entry is None or entry[0] <= self.clock():
            return None
        return entry

    def _remember(self, lookup: str, row: Row) -> None:
        if len(self._publishable) > 10_000:  # bounded: a key sprayer cannot grow it (misses are never kept)
            self._publishable = {}
        self._publishable[lookup] = (self.clock() + self._cache_for, row, _snapshot(row))

    # -- keys ---------------------------------------------------------------------------------
    def resolve_key(self, reader: Reader, value: str, expected_type: str,
                    session_claims: dict | None = None, defer_session: bool = False) -> RequestContext | None:
        """The caller of a key value, or None for a malformed, unknown, expired or revoked key.

        With `session_claims` (a verified access token's), the same single query also tells
        whether the token's session is live (a cached key: one query for that alone, or, with
        `defer_session`, none: the context carries a `PendingSession` for the view's query); a
        dead session resolves to None as well."""
        parsed = parse_key(value)
        if parsed is None or parsed[0] != expected_type:
            return None
        key_type, mode = parsed
        lookup = key_lookup(self.app_secret, key_type, value)
        cacheable = key_type == "publishable" and self.publishable_key_cache_seconds > 0
        cached = self._cached(lookup) if cacheable else None
        if cached is not None:
            _, hit, snapshot = cached
            pending = None if session_claims is None else PendingSession(
                session_claims["sessionId"], session_claims["consumerId"], hit.id)
            if pending is not None and not defer_session:
                if not reader().execute(_SESSION_LIVE_QUERY, pending.params()).scalar():
                    return None
                pending = None
            ctx = self._caller_of(hit, snapshot)
            if ctx is not None:
                ctx.pending_session = pending
            return ctx
        params = {"lookup": lookup}
        if session_claims is not None:
            params.update(live_session_id=session_claims["sessionId"], live_consumer_id=session_claims["consumerId"])
        query = _KEY_QUERY if session_claims is None else _KEY_AND_SESSION_QUERY
        row = reader().execute(query, params).first()
        stale = None  # the lookup an earlier APP_SECRET made, found on a miss only (rotation)
        if row is None and key_type != "publishable" and self.fallbacks:
            for fallback in self.fallbacks:
                params["lookup"] = lookup = key_lookup(fallback, key_type, value)
                row = reader().execute(query, params).first()
                if row is not None:
                    stale = lookup
                    break
            else:  # another request may have re-hashed it between our two reads: look once more
                params["lookup"] = lookup = key_lookup(self.app_secret, key_type, value)
                row = reader().execute(query, params).first()
        if row is None or not constant_time_equal(row.lookup, lookup) or row.type != key_type or row.mode != mode:
            return None
        if stale is not None and (row.revoked_at is None and (row.expires_at is None or row.expires_at > self.clock())):
            self._rehash(row.key_id, stale, key_lookup(self.app_secret, key_type, value))
        if cacheable and row.revoked_at is None:
            self._remember(lookup, row)
        if session_claims is not None and not row.session_live:
            return None
        return self._caller_of(row)

    def _rehash(self, key_id: str, stale: str, lookup: str) -> None:
        """Move a key's lookup to APP_SECRET's hash on its first use after a rotation (only the
        presented value can be hashed again: it is stored nowhere)."""
        with self.db.write() as connection:
            connection.execute(update(ApiKey).where(ApiKey.id == key_id, ApiKey.lookup == stale)
                               .values(lookup=lookup, lookup_fingerprint=short_fingerprint(self.app_secret)))

    def resolve_key_id(self, reader: Reader, key_id: str) -> RequestContext | None:
        """The caller of a key known by id (the dashboard's session refers to its key this way),
        under the same rule as a presented value: None once it is revoked or expired."""
        row = reader().execute(_KEY_BY_ID_QUERY, {"key_id": key_id}).first()
        return None if row is None else self._caller_of(row)

    def _caller_of(self, row, snapshot: OrganizationSnapshot | None = None) -> RequestContext | None:
        """The one validity rule of a key row (revoked or expired: no caller), and the
        last-used stamp."""
        now = self.clock()
        if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
            return None
        last_used = max(filter(None, (row.last_used_at, self._touched.get(row.key_id))), default=None)
        if last_used is None or now - last_used > LAST_USED_RESOLUTION:
            # The one write on the read path, at most once a minute per key and process.
            with self.db.write() as connection:
                connection.execute(_TOUCH_KEY, {"key_id": row.key_id, "now": now})
            self._touched[row.key_id] = now
        return RequestContext(organization=snapshot or _snapshot(row), mode=row.mode, key_type=row.type,
                              key_id=row.key_id, scopes=key_scopes(row.type, row.scopes))

    def _key(self, reader: Reader, value: str | None, expected_type: str,
             session_claims: dict | None = None, defer_session: bool = False) -> RequestContext:
        ctx = self.resolve_key(reader, value or "", expected_type, session_claims, defer_session)
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

    def session_is_live(self, reader: Reader, organization_id: str, claims: dict) -> OrganizationSnapshot | None:
        """The organization, if the token's session is live in it (one query); else None."""
        row = reader().execute(_ORG_AND_SESSION_QUERY, {"organization_id": organization_id, "mode": claims["mode"],
                                                      "live_session_id": claims["sessionId"],
                                                      "live_consumer_id": claims["consumerId"]}).first()
        return _snapshot(row) if row is not None and row.session_live else None

    # -- callers ------------------------------------------------------------------------------
    def resolve(self, reader: Reader, kind: CredentialKind, credentials: Credentials,
                defer_session: bool = False) -> RequestContext:
        """The caller for a view that needs `kind` (see `CredentialKind`), else 401/403.

        `defer_session` (read-only views only): a consumer's session liveness, when it would take
        a query of its own, is left to the view's query (`ctx.pending_session`); the caller of
        `resolve` must then call `settle` before answering."""
        if kind is CredentialKind.SECRET:
            return self._secret_caller(reader, credentials)
        if kind is CredentialKind.PUBLISHABLE:
            return self._key(reader, credentials.publishable_key, "publishable")
        if kind is CredentialKind.ACCESS or (kind is CredentialKind.TOKEN and credentials.publishable_key):
            return self._consumer_with_key(reader, credentials, defer_session)
        if kind is CredentialKind.TOKEN:
            return self._consumer_by_token(reader, credentials)
        raise ValueError(kind)

    def settle(self, reader: Reader, ctx: RequestContext) -> None:
        """Read a session liveness the view left unread (none read, or it failed before its
        query): 401 for a dead session. Nothing when there is nothing pending."""
        pending = ctx.pending_session
        if pending is not None and not pending.checked:
            pending.confirm(bool(reader().execute(_SESSION_LIVE_QUERY, pending.params()).scalar()))

    def _consumer_with_key(self, reader: Reader, credentials: Credentials,
                           defer_session: bool = False) -> RequestContext:
        """Verify the access token (no database), then resolve the publishable key and the
        token's session liveness in one query."""
        parsed = parse_key(credentials.publishable_key or "")
        if parsed is None or parsed[0] != "publishable":
            raise unauthenticated()
        claims = self.access_claims(credentials.bearer, None, parsed[1])
        ctx = self._key(reader, credentials.publishable_key, "publishable", claims, defer_session)
        if claims["organizationId"] != ctx.organization_id:
            raise unauthenticated()
        return self._as_consumer(ctx, claims)

    def _consumer_by_token(self, reader: Reader, credentials: Credentials) -> RequestContext:
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

    def _secret_caller(self, reader: Reader, credentials: Credentials) -> RequestContext:
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
