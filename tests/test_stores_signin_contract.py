"""The sign-in store's contract (app/stores/signin.py), one suite run against every implementation
the test database can run: on SQLite the generic store, on PostgreSQL the generic store and
PostgreSQL's (`make test` runs this file on both). The store is driven through its interface
only; the database is read afterwards to see what was stored."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update

from app.errors import AUTHENTICATION_REQUIRED, ApiError
from app.events import ConsumerCreated, SessionCreated
from app.models import AuthSession, Consumer, OtpCode, WebhookEvent
from app.otp.check import PresentedCode
from app.otp.identifiers import Identifier
from app.otp.service import code_hash
from app.security.callers import organization_snapshot
from app.stores.signin import (
    GenericSignInStore,
    PostgresSignInStore,
    SignIn,
    SignInStore,
)
from tests.helpers import secret

IMPLEMENTATIONS = {"generic": GenericSignInStore, "postgresql": PostgresSignInStore}
CODE, WRONG = "123456", "654321"
_emails = itertools.count()


@pytest.fixture(params=list(IMPLEMENTATIONS))
def store(request, app) -> SignInStore:
    usher = app.extensions["usher"]
    if request.param == "postgresql" and usher.db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's store needs PostgreSQL (make test runs this file again on it)")
    return IMPLEMENTATIONS[request.param](usher.db, usher.events)


class Tenant:
    """The test mode of a new organization, seen from below the API: what a grant would give the
    store, and what the store left in the database."""

    def __init__(self, app, tenant):
        self.app, self.client, self.sk, self.org_id = app, tenant.client, tenant.sk, tenant.org_id
        self.usher = app.extensions["usher"]
        tenant.guest()  # the first signature makes the signing keys
        with self.usher.db.engine.connect() as connection:
            self.organization = organization_snapshot(connection, self.org_id, "test")

    def sign_in(self, guest: dict | None = None) -> SignIn:
        return SignIn(self.organization, "test", "otp", self.usher.auth.tokens.current_kids(),
                      self.usher.settings.app_secret, guest)

    def guest_sign_in(self) -> SignIn:
        return SignIn(self.organization, "test", "guest", self.usher.auth.tokens.current_kids(),
                      self.usher.settings.app_secret)

    def email(self) -> Identifier:
        return Identifier("email", f"shopper{next(_emails)}@example.com")

    def code(self, identifier: Identifier, code: str = CODE, expires_in: int = 600) -> None:
        """A live code for the identifier, stored as a request stores it."""
        now = self.usher.clock()
        with self.usher.db.engine.begin() as connection:
            connection.execute(insert(OtpCode).values(
                organization_id=self.org_id, mode="test", identifier=identifier.value, channel="email",
                code_hash=code_hash(self.usher.settings.app_secret, self.org_id, "test", identifier.value, code),
                created_at=now, expires_at=now + timedelta(seconds=expires_in), attempts=0))

    def presented(self, identifier: Identifier, code: str = CODE) -> PresentedCode:
        return PresentedCode.of(self.usher.settings.app_secret, (), self.org_id, "test", identifier.value, code)

    def verify(self, store: SignInStore, identifier: Identifier, code: str = CODE, guest: dict | None = None):
        return store.verify_code_and_sign_in(self.sign_in(guest), identifier, self.presented(identifier, code),
                                             self.usher.clock)

    def listen(self, *event_types: str) -> None:
        created = self.client.post("/api/v1/webhook-endpoints", headers=secret(self.sk),
                                   json={"url": "http://127.0.0.1:9/usher", "events": list(event_types)})
        assert created.status_code == 201, created.json

    def read(self, statement):
        with self.usher.db.engine.connect() as connection:
            return connection.execute(statement).all()

    def stored_code(self, identifier: Identifier):
        return self.read(select(OtpCode.attempts, OtpCode.consumed_at).where(
            OtpCode.organization_id == self.org_id, OtpCode.identifier == identifier.value))[0]

    def consumers(self, identifier: Identifier) -> list[str]:
        return [row.id for row in self.read(select(Consumer.id).where(Consumer.organization_id == self.org_id,
                                                                      Consumer.email == identifier.value))]

    def sessions(self, consumer_id: str) -> list:
        return self.read(select(AuthSession).where(AuthSession.consumer_id == consumer_id))

    def events(self) -> list[str]:
        return sorted(row.type for row in self.read(select(WebhookEvent.type).where(
            WebhookEvent.organization_id == self.org_id)))


@pytest.fixture
def shop(app, tenant) -> Tenant:
    return Tenant(app, tenant)


def refused(call) -> str:
    with pytest.raises(ApiError) as raised:
        call()
    return raised.value.error


def race(count: int, call) -> list:
    """`call()` from `count` threads released at once; each result, or the ApiError it raised."""
    barrier = threading.Barrier(count)

    def go(_):
        barrier.wait()
        try:
            return call()
        except ApiError as error:
            return error

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(go, range(count)))


# -- one-time codes ------------------------------------------------------------------------------

def test_a_code_signs_in_once(store, shop):
    email = shop.email()
    shop.code(email)
    row, generation = shop.verify(store, email)
    assert row.type == "otp" and row.consumer_id.startswith("cons_") and generation.session_id == row.id
    assert shop.consumers(email) == [row.consumer_id]
    assert [session.id for session in shop.sessions(row.consumer_id)] == [row.id]
    assert shop.stored_code(email).consumed_at is not None
    assert refused(lambda: shop.verify(store, email)) == "otp_expired"
    assert len(shop.sessions(row.consumer_id)) == 1


def test_a_second_sign_in_finds_the_consumer(store, shop):
    email = shop.email()
    shop.code(email)
    first, _ = shop.verify(store, email)
    with shop.usher.db.engine.begin() as connection:  # a new code, as a new request stores it
        connection.execute(update(OtpCode).where(OtpCode.identifier == email.value).values(consumed_at=None))
    second, _ = shop.verify(store, email)
    assert second.consumer_id == first.consumer_id and second.id != first.id
    assert shop.consumers(email) == [first.consumer_id]


def test_a_wrong_code_counts_a_try_and_five_end_the_code(store, shop):
    email = shop.email()
    shop.code(email)
    for tries in range(1, 6):
        assert refused(lambda: shop.verify(store, email, WRONG)) == "otp_invalid"
        assert shop.stored_code(email).attempts == tries
    assert refused(lambda: shop.verify(store, email)) == "otp_expired"  # the right code, spent
    assert refused(lambda: shop.verify(store, email, WRONG)) == "otp_invalid"  # wrong stays wrong
    assert shop.stored_code(email).attempts == 5 and shop.consumers(email) == []


def test_no_code_is_invalid_and_stores_nothing(store, shop):
    email = shop.email()
    assert refused(lambda: shop.verify(store, email)) == "otp_invalid"
    assert shop.consumers(email) == []


def test_an_expired_code_fails_and_is_not_consumed(store, shop):
    email = shop.email()
    shop.code(email, expires_in=-1)
    assert refused(lambda: shop.verify(store, email)) == "otp_expired"
    code = shop.stored_code(email)
    assert code.consumed_at is None and code.attempts == 0 and shop.consumers(email) == []


def test_of_concurrent_verifies_of_one_code_exactly_one_wins(store, shop):
    email = shop.email()
    shop.code(email)
    results = race(8, lambda: shop.verify(store, email))
    won = [result for result in results if not isinstance(result, ApiError)]
    assert len(won) == 1, results
    assert sorted(result.error for result in results if isinstance(result, ApiError)) == ["otp_expired"] * 7
    assert shop.consumers(email) == [won[0][0].consumer_id]
    assert len(shop.sessions(won[0][0].consumer_id)) == 1


# -- events ----------------------------------------------------------------------------------------

def test_a_first_sign_in_records_consumer_created_and_session_created_when_listened_to(store, shop):
    email = shop.email()
    shop.code(email)
    shop.verify(store, email)
    assert shop.events() == []  # nobody listens: nothing recorded
    shop.listen(ConsumerCreated.TYPE, SessionCreated.TYPE)
    email = shop.email()
    shop.code(email)
    shop.verify(store, email)
    assert shop.events() == ["consumer.created", "session.created"]


def test_a_guest_is_its_consumer_and_its_session(store, shop):
    shop.listen(ConsumerCreated.TYPE, SessionCreated.TYPE)
    row, generation = store.start_guest(shop.guest_sign_in(), shop.usher.clock())
    assert row.consumer_id.startswith("guest_") and row.type == "guest" and generation.consumer_id == row.consumer_id
    assert [session.id for session in shop.sessions(row.consumer_id)] == [row.id]
    assert shop.events() == ["consumer.created", "session.created"]


# -- the guest upgrade ------------------------------------------------------------------------------

def guest_of(store, shop) -> tuple[AuthSession, dict]:
    """A guest, and the claims of its access token (what the server verified)."""
    row, _ = store.start_guest(shop.guest_sign_in(), shop.usher.clock())
    return row, {"consumerId": row.consumer_id, "sessionId": row.id, "organizationId": shop.org_id}


def test_the_guest_upgrade_claims_the_guests_session_once(store, shop):
    guest, claims = guest_of(store, shop)
    shop.listen("session.revoked", "consumer.merged")
    email = shop.email()
    shop.code(email)
    row, _ = shop.verify(store, email, guest=claims)
    ended, = shop.sessions(guest.consumer_id)
    assert ended.revoked_at is not None and ended.revoked_reason == "upgraded"
    merged_into = shop.read(select(Consumer.merged_into).where(Consumer.id == guest.consumer_id))[0][0]
    assert merged_into == row.consumer_id
    assert shop.events() == ["consumer.merged", "session.revoked"]
    other = shop.email()  # the same guest token again: refused, and the code is not spent
    shop.code(other)
    with pytest.raises(ApiError) as raised:
        shop.verify(store, other, guest=claims)
    assert raised.value.error == AUTHENTICATION_REQUIRED and raised.value.status == 401
    assert shop.stored_code(other).consumed_at is None and shop.consumers(other) == []


def test_of_concurrent_upgrades_of_one_guest_exactly_one_wins(store, shop):
    _, claims = guest_of(store, shop)
    emails = [shop.email() for _ in range(6)]
    for email in emails:
        shop.code(email)
    turns = iter(emails)
    lock = threading.Lock()

    def upgrade():
        with lock:
            email = next(turns)
        return shop.verify(store, email, guest=claims)

    results = race(len(emails), upgrade)
    assert len([result for result in results if not isinstance(result, ApiError)]) == 1, results
    assert [result.error for result in results if isinstance(result, ApiError)] == [AUTHENTICATION_REQUIRED] * 5
    assert sum(shop.stored_code(email).consumed_at is not None for email in emails) == 1


# -- inside a grant's own transaction (external identities, plugins) ------------------------------

def test_in_a_transaction_a_consumer_is_found_or_created_and_signed_in(store, shop):
    email, now = shop.email(), shop.usher.clock()
    with shop.usher.db.write() as connection:
        consumer_id = store.find_or_create_consumer(connection, shop.org_id, "test", now, email=email.value)
        assert store.find_or_create_consumer(connection, shop.org_id, "test", now, email=email.value) == consumer_id
        row, _ = store.sign_in(connection, consumer_id, shop.sign_in(), now)
        made = store.create_consumer(connection, shop.org_id, "test", now)
    assert shop.consumers(email) == [consumer_id] and made.startswith("cons_") and made != consumer_id
    assert [session.id for session in shop.sessions(consumer_id)] == [row.id]
