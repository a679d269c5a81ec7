"""The sign-in stores' contract: refresh rotation (`app.stores.refresh.RefreshStore`) and
exchange codes (`app.stores.exchange.ExchangeStore`), run against every implementation the
current database can run (SQLite: the generic ones; PostgreSQL: the generic ones and
PostgreSQL's), through the interfaces only. The refresh store is asked with the grant's own
policy (`RotationPolicy`), so each outcome is the one the grant answers with. The events outbox
is a recorder: what a store emits is what it hands to the outbox. `make test` runs this file
on both databases; a new implementation joins `REFRESH` or `EXCHANGE` and must pass the same tests.
"""

from __future__ import annotations

import ast
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy import select

from app.db import Database
from app.events import Event, ExchangeCodeReplayed, RefreshTokenReused
from app.grants.identified import insert_consumer
from app.grants.refresh import RotationPolicy
from app.models import AuditEvent, AuthSession, ExchangeCode, ExternalIdentity
from app.security.callers import organization_snapshot
from app.services.sessions import (
    insert_session,
    new_session_row,
    refresh_hash,
    successor_jtis,
)
from app.stores.exchange import ExchangeStore, GenericExchangeStore
from app.stores.refresh import (
    Decision,
    GenericRefreshStore,
    PostgresRefreshStore,
    RefreshStore,
    Verdict,
)
from tests.helpers import Actions, TenantActions
from tests.test_sessions import race

ALL = frozenset({"sqlite", "postgresql"})
#: implementation name -> (the databases it runs on, its factory)
REFRESH: dict[str, tuple[frozenset[str], Callable[[Database, Any], RefreshStore]]] = {
    "generic": (ALL, GenericRefreshStore),
    "postgresql": (frozenset({"postgresql"}), PostgresRefreshStore),
}
EXCHANGE: dict[str, tuple[frozenset[str], Callable[[Database, Any], ExchangeStore]]] = {
    "generic": (ALL, GenericExchangeStore),
}
RACERS = 8


class Outbox:
    """Records what a store hands to the events outbox (`app.services.events.Events`)."""

    def __init__(self):
        self.events: list[Event] = []
        self.revoked: list[tuple[str, str]] = []  # (session id, reason)

    def record(self, _connection, event: Event) -> None:
        self.events.append(event)

    def sessions_revoked(self, _connection, rows, reason: str) -> None:
        self.revoked.extend((row.id, reason) for row in rows)


def _implementation(request, app, implementations: dict) -> tuple[Any, Outbox]:
    databases, factory = implementations[request.param]
    dialect = app.extensions["usher"].db.engine.dialect.name
    if dialect not in databases:
        pytest.skip(f"{request.param} does not run on {dialect} (make test runs this file again on PostgreSQL)")
    outbox = Outbox()
    return factory(app.extensions["usher"].db, outbox), outbox


@pytest.fixture(params=sorted(REFRESH))
def refresh_store(request, app) -> tuple[RefreshStore, Outbox]:
    return _implementation(request, app, REFRESH)


@pytest.fixture(params=sorted(EXCHANGE))
def exchange_store(request, app) -> tuple[ExchangeStore, Outbox]:
    return _implementation(request, app, EXCHANGE)


@pytest.fixture(scope="module")
def shop(app) -> TenantActions:
    client = app.test_client()
    created = Actions(app, client).create_org("Sign-in stores")
    return TenantActions(client, created["keys"]["test"], created["organizationId"])


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _row(app, session_id: str) -> AuthSession:
    with app.extensions["usher"].db.sessionmaker() as session:
        return session.get(AuthSession, session_id)


def _audited(app, event_type: str, session_id: str | None) -> list[AuditEvent]:
    with app.extensions["usher"].db.sessionmaker() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.type == event_type,
                                                             AuditEvent.target_id == session_id)))


class Refresher:
    """The grant's policy for one refresh token, at a given instant."""

    def __init__(self, app, token: str):
        self.app, self.claims = app, _claims(token)
        self.usher = app.extensions["usher"]

    def policy(self, now: datetime, claims: dict | None = None) -> RotationPolicy:
        usher, claims = self.usher, claims or self.claims
        with usher.db.engine.connect() as connection:
            # the caller's organization (the request's), whatever the token claims
            organization = organization_snapshot(connection, self.claims["organizationId"], self.claims["mode"])
        return RotationPolicy(claims=claims, presented=refresh_hash(usher.settings.app_secret, claims["jti"]),
                              app_secret=usher.settings.app_secret, fallbacks=usher.settings.app_secret_fallbacks,
                              grace=timedelta(seconds=usher.settings.refresh_grace_seconds),
                              kids=usher.auth.tokens.current_kids(), organization=organization, now=now)

    def rotate(self, store: RefreshStore, now: datetime, claims: dict | None = None) -> Decision:
        return store.rotate(self.claims["sessionId"], self.policy(now, claims), now)

    def successor_jti(self) -> str:
        return successor_jtis(self.usher.settings.app_secret, self.claims["jti"])[1]


# -- refresh rotation ------------------------------------------------------------------------

def test_the_current_token_rotates_once(app, shop, refresh_store):
    store, outbox = refresh_store
    guest = shop.guest()
    refresher, now = Refresher(app, guest["refreshToken"]), app.extensions["usher"].clock()
    decision = refresher.rotate(store, now)
    assert decision.verdict is Verdict.ROTATE
    assert decision.generation is not None and decision.generation.refresh_jti == refresher.successor_jti()
    stored = _row(app, guest["session"]["sessionId"])
    assert stored.refresh_hash == refresh_hash(app.extensions["usher"].settings.app_secret, refresher.successor_jti())
    assert stored.rotated_at == now and stored.revoked_at is None
    # the rotated token again, still inside the window: the same generation, nothing rotated twice
    again = refresher.rotate(store, now)
    assert again.verdict is Verdict.CURRENT and again.generation == decision.generation
    assert _row(app, guest["session"]["sessionId"]).refresh_hash == stored.refresh_hash
    # and its successor rotates in turn
    successor = Refresher(app, app.extensions["usher"].auth.tokens.sign_pair(decision.generation)[1])
    assert successor.rotate(store, now).verdict is Verdict.ROTATE
    assert outbox.events == [] and outbox.revoked == []


def test_the_grace_window_returns_the_current_generation_and_writes_nothing(app, shop, refresh_store):
    store, outbox = refresh_store
    guest = shop.guest()
    refresher, now = Refresher(app, guest["refreshToken"]), app.extensions["usher"].clock()
    rotated = refresher.rotate(store, now)
    before = _row(app, guest["session"]["sessionId"])
    grace = app.extensions["usher"].settings.refresh_grace_seconds
    inside = refresher.rotate(store, now + timedelta(seconds=grace))
    assert inside.verdict is Verdict.CURRENT and inside.generation == rotated.generation
    after = _row(app, guest["session"]["sessionId"])
    assert (after.refresh_hash, after.previous_refresh_hash, after.rotated_at, after.revoked_at) == (
        before.refresh_hash, before.previous_refresh_hash, before.rotated_at, None)
    assert outbox.events == [] and outbox.revoked == []


def test_reuse_after_the_grace_window_revokes_audits_and_emits(app, shop, refresh_store):
    store, outbox = refresh_store
    guest = shop.guest()
    session_id = guest["session"]["sessionId"]
    refresher, now = Refresher(app, guest["refreshToken"]), app.extensions["usher"].clock()
    rotated = refresher.rotate(store, now)
    later = now + timedelta(seconds=app.extensions["usher"].settings.refresh_grace_seconds + 1)
    reused = refresher.rotate(store, later)
    assert reused == Decision(Verdict.REUSED)
    stored = _row(app, session_id)
    assert stored.revoked_at is not None and stored.revoked_reason == "refresh_token_reused"
    assert outbox.revoked == [(session_id, "refresh_token_reused")]
    assert outbox.events == [RefreshTokenReused(organization_id=shop.org_id, mode="test", session_id=session_id,
                                                consumer_id=guest["session"]["consumerId"])]
    [audited] = _audited(app, "refresh_token.reused", session_id)
    assert audited.details == {"consumerId": guest["session"]["consumerId"], "sessionRevoked": True}
    # the session is gone: its current token too is refused now, and nothing more is emitted
    assert rotated.generation is not None
    successor = Refresher(app, app.extensions["usher"].auth.tokens.sign_pair(rotated.generation)[1])
    assert successor.rotate(store, later) == Decision(Verdict.INVALID)
    assert len(outbox.events) == 1 and len(outbox.revoked) == 1


def test_a_foreign_or_unknown_session_is_invalid_and_nothing_is_written(app, shop, refresh_store):
    store, outbox = refresh_store
    guest = shop.guest()
    refresher, now = Refresher(app, guest["refreshToken"]), app.extensions["usher"].clock()
    before = _row(app, guest["session"]["sessionId"])
    for claims in ({**refresher.claims, "consumerId": "guest_someone_else"}, {**refresher.claims, "mode": "live"},
                   {**refresher.claims, "organizationId": "org_another"}):
        assert refresher.rotate(store, now, claims) == Decision(Verdict.INVALID)
    assert store.rotate("sess_unknown", refresher.policy(now), now) == Decision(Verdict.INVALID)
    after = _row(app, guest["session"]["sessionId"])
    assert (after.refresh_hash, after.rotated_at, after.revoked_at) == (before.refresh_hash, None, None)
    assert outbox.events == [] and outbox.revoked == []


def test_concurrent_rotations_of_one_token_rotate_once_and_the_others_get_the_same_generation(app, shop,
                                                                                            refresh_store):
    store, outbox = refresh_store
    guest = shop.guest()
    refresher, now = Refresher(app, guest["refreshToken"]), app.extensions["usher"].clock()
    policy = refresher.policy(now)
    decisions = race(RACERS, lambda: store.rotate(refresher.claims["sessionId"], policy, now))
    assert sorted(d.verdict.value for d in decisions) == ["current"] * (RACERS - 1) + ["rotate"]
    assert len({d.generation for d in decisions}) == 1
    assert decisions[0].generation is not None and decisions[0].generation.refresh_jti == refresher.successor_jti()
    stored = _row(app, guest["session"]["sessionId"])
    secret_ = app.extensions["usher"].settings.app_secret
    assert stored.refresh_hash == refresh_hash(secret_, refresher.successor_jti())  # rotated once
    assert stored.previous_refresh_hash == refresh_hash(secret_, refresher.claims["jti"])
    assert outbox.events == [] and outbox.revoked == []


def test_concurrent_reuse_after_the_window_revokes_once(app, shop, refresh_store):
    store, outbox = refresh_store
    guest = shop.guest()
    session_id = guest["session"]["sessionId"]
    refresher, now = Refresher(app, guest["refreshToken"]), app.extensions["usher"].clock()
    refresher.rotate(store, now)
    later = now + timedelta(seconds=app.extensions["usher"].settings.refresh_grace_seconds + 1)
    policy = refresher.policy(later)
    decisions = race(RACERS, lambda: store.rotate(session_id, policy, later))
    # one finds the stolen token's session live and ends it; the others find it ended
    assert sorted(d.verdict.value for d in decisions) == ["invalid"] * (RACERS - 1) + ["reused"]
    assert outbox.revoked == [(session_id, "refresh_token_reused")]
    assert [type(event) for event in outbox.events] == [RefreshTokenReused]
    assert len(_audited(app, "refresh_token.reused", session_id)) == 1


# -- exchange codes ---------------------------------------------------------------------------

class Codes:
    """Codes issued straight to a store, and sessions to consume them with."""

    def __init__(self, app, shop: TenantActions, store: ExchangeStore):
        self.app, self.shop, self.store = app, shop, store
        self.usher = app.extensions["usher"]

    def issue(self, subject: str = "user_1", **values) -> str:
        code_hash, now = secrets.token_hex(32), self.usher.clock()
        self.store.issue(ExchangeCode(**{
            "code_hash": code_hash, "organization_id": self.shop.org_id, "mode": "test", "provider": "shop",
            "issuer": "https://shop.test", "subject": subject, "claims": {"name": "Ada"}, "code_challenge": None,
            "created_at": now, "expires_at": now + timedelta(seconds=60), **values}))
        return code_hash

    def redeem(self, code_hash: str, consumer_id: str | None = None) -> tuple[str, str]:
        """The exchange as the grant makes it, minus the checks: (consumer id, session id)."""
        now = self.usher.clock()
        with self.store.redeem([code_hash]) as redemption:
            assert redemption.code is not None and redemption.code.consumed_at is None
            made = redemption.consumer(now, lambda: self.new_consumer(redemption.connection, now, consumer_id))
            session_id = self.new_session(redemption.connection, made, now)
            redemption.consume(session_id, now)
        return made, session_id

    def new_consumer(self, connection, now: datetime, consumer_id: str | None = None) -> str:
        return insert_consumer(connection, self.usher.events, "cons", self.shop.org_id, "test", now, consumer_id)

    def new_session(self, connection, consumer_id: str, now: datetime) -> str:
        organization = organization_snapshot(connection, self.shop.org_id, "test")
        row, _generation = new_session_row(self.usher.auth.tokens.current_kids(), self.usher.settings.app_secret,
                                           organization, "test", consumer_id, "external", now)
        insert_session(connection, row)
        return row.id


@pytest.fixture
def codes(app, shop, exchange_store) -> Codes:
    return Codes(app, shop, exchange_store[0])


def test_a_code_is_consumed_once(app, codes):
    code_hash = codes.issue()
    _consumer_id, session_id = codes.redeem(code_hash)
    with codes.store.redeem([code_hash]) as redemption:
        code = redemption.code
        assert code is not None and code.consumed_at is not None and code.session_id == session_id
    assert _row(app, session_id).revoked_at is None  # looking at a used code ends nothing


def test_an_unknown_code_is_none_and_fallback_hashes_are_tried_in_order(codes):
    code_hash = codes.issue()
    with codes.store.redeem(["0" * 64]) as redemption:
        assert redemption.code is None
    with codes.store.redeem(["0" * 64, code_hash, "1" * 64]) as redemption:
        assert redemption.code is not None and redemption.code.code_hash == code_hash


def test_a_replay_revokes_the_session_the_code_made_audits_and_emits(app, shop, codes, exchange_store):
    _store, outbox = exchange_store
    code_hash = codes.issue()
    consumer_id, session_id = codes.redeem(code_hash)
    with codes.store.redeem([code_hash]) as redemption:
        redemption.replayed(codes.usher.clock())
    stored = _row(app, session_id)
    assert stored.revoked_at is not None and stored.revoked_reason == "exchange_code_replayed"
    assert outbox.revoked == [(session_id, "exchange_code_replayed")]
    assert outbox.events == [ExchangeCodeReplayed(organization_id=shop.org_id, mode="test", session_id=session_id,
                                                  consumer_id=consumer_id)]
    [audited] = _audited(app, "exchange_code.replayed", session_id)
    assert audited.details == {"provider": "shop", "sessionRevoked": True}


def test_the_same_identity_is_the_same_consumer_and_its_claims_follow_the_latest_code(app, codes):
    first, _ = codes.redeem(codes.issue(subject="same"))
    second, _ = codes.redeem(codes.issue(subject="same", claims={"name": "Grace"}), consumer_id="cons_never_made")
    assert second == first  # found, not created
    third, _ = codes.redeem(codes.issue(subject="same", claims=None))  # no claims: the stored ones stay
    assert third == first
    with app.extensions["usher"].db.sessionmaker() as session:
        identity = session.scalars(select(ExternalIdentity).where(ExternalIdentity.subject == "same",
                                                                  ExternalIdentity.consumer_id == first)).one()
    assert identity.claims == {"name": "Grace"}


def test_an_error_inside_a_redemption_leaves_the_code_unused(codes):
    code_hash = codes.issue()
    with pytest.raises(RuntimeError), codes.store.redeem([code_hash]) as redemption:
        redemption.consume("sess_never_made", codes.usher.clock())
        raise RuntimeError("the verifier did not match")
    codes.redeem(code_hash)  # still unused


def test_concurrent_redemptions_of_one_code_consume_it_once(app, codes):
    code_hash = codes.issue(subject="racer")

    def exchange() -> str | None:
        now = codes.usher.clock()
        with codes.store.redeem([code_hash]) as redemption:
            code = redemption.code
            assert code is not None
            if code.consumed_at is not None:
                return None
            made = redemption.consumer(now, lambda: codes.new_consumer(redemption.connection, now))
            session_id = codes.new_session(redemption.connection, made, now)
            redemption.consume(session_id, now)
            return session_id

    made = [session_id for session_id in race(RACERS, exchange) if session_id is not None]
    assert len(made) == 1
    with codes.store.redeem([code_hash]) as redemption:
        assert redemption.code is not None and redemption.code.session_id == made[0]


# -- the grants hold the policy only ----------------------------------------------------------

@pytest.mark.parametrize("module", ["app/grants/refresh.py", "app/grants/external.py"])
def test_the_grants_hold_no_sql_and_one_path(module):
    """Their persistence is the stores': no SQLAlchemy, no transaction of their own, no choice
    of path by database."""
    source = (Path(__file__).parent.parent / module).read_text()
    imported = {alias.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert not {name for name in imported if name.split(".")[0] == "sqlalchemy"}
    for needle in ("db.write(", "db.autocommit(", "db.transaction(", "one_statement_writes", ".execute("):
        assert needle not in source
