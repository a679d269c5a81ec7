"""One-time codes in test mode: request, outbox, verify, limits, single use, guest upgrade."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update

from app.db import utcnow
from app.models import AuthSession, CapturedMessage, Consumer, OtpCode
from app.otp.service import code_hash
from tests.helpers import (
    Statements,
    TenantActions,
    bearer,
    consumer,
    on_postgresql,
    publishable,
    secret,
)
from tests.live import http
from tests.test_sessions import race

OTP_INVALID = {"error": "otp_invalid", "message": "Invalid verification code. Please try again."}
OTP_EXPIRED = {"error": "otp_expired", "message": "Your verification code has expired. Please request a new one."}


class Otp:
    def __init__(self, tenant: TenantActions):
        self.tenant, self.client = tenant, tenant.client

    def request(self, headers=None, **body):
        return self.client.post("/api/v1/auth/otp/request", json=body,
                                headers={**publishable(self.tenant.pk), **(headers or {})})

    def verify(self, headers=None, **body):
        return self.client.post("/api/v1/auth/otp/verify", json=body,
                                headers={**publishable(self.tenant.pk), **(headers or {})})

    def outbox(self) -> list[dict]:
        response = self.client.get("/api/v1/test/otp-messages", headers=secret(self.tenant.sk))
        assert response.status_code == 200
        return response.json["data"]

    def last_code(self, to: str) -> str:
        message = next(m for m in self.outbox() if m["to"] == to)
        return re.search(r"\b(\d{6,10})\b", message["body"]).group(1)

    def cooldown_passes(self, identifier: str) -> None:
        """The 1 s resend cooldown set by the test is over for `identifier`. Its window runs on the
        limit storage's own time (the `limits` library's clock, or Redis's), which the app clock
        cannot move, so the test clears that one window instead of sleeping through it."""
        usher = self.client.application.extensions["usher"]
        usher.limits.clear("otp_request_cooldown", "1 per 1 second", self.tenant.org_id, self.tenant.pk.split("_")[1],
                           identifier)

    def settings(self, **values):
        assert self.client.patch("/api/v1/settings", json=values, headers=secret(self.tenant.sk)).status_code == 200


@pytest.fixture
def otp(tenant) -> Otp:
    return Otp(tenant)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def test_email_code_round_trip_and_case_insensitive_identity(otp):
    response = otp.request(email="Ann.Lee@Example.COM")
    assert response.status_code == 202
    assert response.json["sent"] is True and response.json["expiresAt"].endswith("Z")
    code = otp.last_code("ann.lee@example.com")
    assert len(code) == 6
    first = otp.verify(email="ann.lee@EXAMPLE.com", code=code)
    assert first.status_code == 200
    assert first.json["session"]["type"] == "otp"
    assert first.json["session"]["consumerId"].startswith("cons_")
    assert "guestId" not in first.json["session"]
    # A second code for the same person signs in the same consumer.
    otp.settings(otpCooldown=1)
    otp.cooldown_passes("ann.lee@example.com")
    otp.request(email="ann.lee@example.com")
    second = otp.verify(email="Ann.Lee@example.com", code=otp.last_code("ann.lee@example.com"))
    assert second.json["session"]["consumerId"] == first.json["session"]["consumerId"]
    listed = otp.client.get("/api/v1/consumers?email=ANN.LEE@example.com", headers=secret(otp.tenant.sk)).json
    assert [c["id"] for c in listed["data"]] == [first.json["session"]["consumerId"]]


def test_phone_codes_in_national_format_with_default_country(otp):
    assert otp.request(phone="(202) 555-1234", defaultCountry="US").status_code == 202
    message = otp.outbox()[0]
    assert message["to"] == "+12025551234" and message["channel"] == "sms"
    code = otp.last_code("+12025551234")
    verified = otp.verify(phone="202-555-1234", defaultCountry="US", code=code)
    assert verified.status_code == 200
    got = otp.client.get(f"/api/v1/consumers/{verified.json['session']['consumerId']}", headers=secret(otp.tenant.sk))
    assert got.json["phone"] == "+12025551234" and got.json["email"] is None


def test_the_seed_examples_work_as_written(otp):
    assert otp.request(email="ann@example.com").status_code == 202
    assert otp.request(phone="+12025551234", defaultCountry="US").status_code == 202
    assert otp.verify(phone="+12025551234", code=otp.last_code("+12025551234"), defaultCountry="US").status_code == 200
    assert otp.verify(email="ann@example.com", code=otp.last_code("ann@example.com")).status_code == 200


@pytest.mark.parametrize("body, error, field", [
    ({"email": "not-an-email"}, "invalid_email", None),
    ({"email": "ann@"}, "invalid_email", None),
    ({"phone": "12"}, "invalid_phone", None),
    ({"phone": "+19005551234"}, "invalid_phone", None),  # premium rate
    ({"phone": "+442079460018"}, "invalid_phone", None),  # fixed line: no SMS
    ({"phone": "2025551234"}, "invalid_phone", None),  # national format without defaultCountry
    ({"phone": "2025551234", "defaultCountry": "XX"}, "validation_error", "defaultCountry"),
    ({}, "validation_error", "_schema"),
    ({"email": "a@example.com", "phone": "+12025551234"}, "validation_error", "email"),
    ({"email": "a@example.com", "defaultCountry": "US"}, "validation_error", "defaultCountry"),
    ({"email": 5}, "validation_error", "email"),
    ({"email": "a@example.com", "extra": 1}, "validation_error", "extra"),
])
def test_bad_identifiers_are_refused(otp, body, error, field):
    for call in (otp.request, lambda **b: otp.verify(code="123456", **b)):
        response = call(**body)
        assert response.status_code == 400, response.json
        assert response.json["error"] == error
        if field:
            assert field in response.json["details"]


def test_code_format_is_validated(otp):
    for code in ("12345", "abcdef", "12345678901", 123456):
        response = otp.verify(email="ann@example.com", code=code)
        assert response.status_code == 400 and "code" in response.json["details"]


def test_unknown_identifier_gets_the_same_answer_and_no_code_is_otp_invalid(otp):
    response = otp.request(email="new.person@example.com")
    assert response.status_code == 202 and set(response.json) == {"sent", "expiresAt"}
    assert otp.verify(email="never.asked@example.com", code="123456").json == OTP_INVALID


def test_expired_code_is_refused(otp, app):
    otp.request(email="late@example.com")
    code = otp.last_code("late@example.com")
    with app.extensions["usher"].db.transaction() as session:
        session.execute(update(OtpCode).where(OtpCode.identifier == "late@example.com",
                                              OtpCode.organization_id == otp.tenant.org_id)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    response = otp.verify(email="late@example.com", code=code)
    assert response.status_code == 401 and response.json == OTP_EXPIRED


def test_five_wrong_tries_kill_the_code(otp):
    otp.request(email="fumble@example.com")
    code = otp.last_code("fumble@example.com")
    for _ in range(5):
        assert otp.verify(email="fumble@example.com", code=wrong(code)).json == OTP_INVALID
    assert otp.verify(email="fumble@example.com", code=code).json == OTP_EXPIRED


def test_a_new_code_replaces_the_previous_one(otp):
    otp.settings(otpCooldown=1)
    otp.request(email="twice@example.com")
    old = otp.last_code("twice@example.com")
    otp.cooldown_passes("twice@example.com")
    otp.request(email="twice@example.com")
    new = otp.last_code("twice@example.com")
    if old != new:
        assert otp.verify(email="twice@example.com", code=old).json == OTP_INVALID
    assert otp.verify(email="twice@example.com", code=new).status_code == 200


def test_resend_cooldown_answers_429_with_retry_after(otp):
    assert otp.request(email="eager@example.com").status_code == 202
    again = otp.request(email="EAGER@example.com")
    assert again.status_code == 429
    assert again.json["error"] == "rate_limited"
    assert 1 <= int(again.headers["Retry-After"]) <= 30
    assert len([m for m in otp.outbox() if m["to"] == "eager@example.com"]) == 1


def test_hourly_budget_per_identifier(otp):
    otp.settings(otpCooldown=1, otpRequestsPerHour=2)
    assert otp.request(email="hourly@example.com").status_code == 202
    otp.cooldown_passes("hourly@example.com")
    assert otp.request(email="hourly@example.com").status_code == 202
    otp.cooldown_passes("hourly@example.com")
    third = otp.request(email="hourly@example.com")
    assert third.status_code == 429 and third.json["error"] == "rate_limited"
    assert int(third.headers["Retry-After"]) >= 1
    # The hourly budget refused it, not the cooldown: with the cooldown over again, still 429.
    # (Retry-After is the storage's estimate of when the hourly window ends: under a minute
    # just before the hour, so it is not a way to tell the two limits apart.)
    otp.cooldown_passes("hourly@example.com")
    assert otp.request(email="hourly@example.com").status_code == 429
    assert len([m for m in otp.outbox() if m["to"] == "hourly@example.com"]) == 2


def test_failure_budget_per_identifier_survives_a_resend(otp):
    otp.settings(otpCooldown=1)
    for wrong_tries in (4, 4, 2):  # 10 wrong tries across three codes, none dead by itself
        otp.cooldown_passes("guesser@example.com")
        assert otp.request(email="guesser@example.com").status_code == 202
        code = otp.last_code("guesser@example.com")
        for _ in range(wrong_tries):
            assert otp.verify(email="guesser@example.com", code=wrong(code)).json == OTP_INVALID
    blocked = otp.verify(email="guesser@example.com", code=code)  # the right code, but the budget is spent
    assert blocked.status_code == 429 and blocked.json["error"] == "rate_limited"
    assert int(blocked.headers["Retry-After"]) > 0


def test_per_ip_limit_ignores_a_spoofed_forwarded_for(app_config, actions):
    from app import create_app

    for trusted, forged in ((0, lambda i: f"10.0.0.{i}"), (1, lambda i: f"10.0.0.{i}, 203.0.113.7")):
        app = create_app({**app_config, "TRUSTED_PROXY_COUNT": trusted})
        tenant = TenantActions(app.test_client(), actions.create_org()["keys"]["test"])
        limited = Otp(tenant)
        limited.settings(otpRequestsPerIpPerHour=3)
        statuses = [limited.request(email=f"p{i}@example.com", headers={"X-Forwarded-For": forged(i)}).status_code
                    for i in range(4)]
        assert statuses == [202, 202, 202, 429], trusted
        if trusted:  # the address the trusted proxy appended is a different client
            other = limited.request(email="p9@example.com", headers={"X-Forwarded-For": "1.2.3.4, 198.51.100.1"})
            assert other.status_code == 202
        app.extensions["usher"].db.dispose()


def test_database_holds_no_plain_code(otp, app):
    otp.request(email="secretive@example.com")
    code = otp.last_code("secretive@example.com")
    with app.extensions["usher"].db.sessionmaker() as session:
        rows = session.scalars(select(OtpCode).where(OtpCode.identifier == "secretive@example.com")).all()
        captured = session.scalars(select(CapturedMessage).where(CapturedMessage.recipient == "secretive@example.com"))
        stored = [str(getattr(r, c.key)) for r in rows for c in OtpCode.__table__.columns]
        blobs = [m.body_sealed for m in captured]
    assert rows and blobs
    assert not any(code in value for value in stored)
    assert not any(code.encode() in blob for blob in blobs)


def test_outbox_refuses_live_keys_and_publishable_keys(otp, org):
    live = otp.client.get("/api/v1/test/otp-messages", headers=secret(org["keys"]["live"]["secretKey"]))
    assert live.status_code == 403 and live.json["error"] == "forbidden"
    assert otp.client.get("/api/v1/test/otp-messages",
                          headers=publishable(otp.tenant.pk)).json == {"error": "Secret key required"}


def test_outbox_is_per_organization_and_newest_first(otp, actions, client):
    otp.request(email="first@example.com")
    otp.request(email="second@example.com")
    assert [m["to"] for m in otp.outbox()[:2]] == ["second@example.com", "first@example.com"]
    other = Otp(TenantActions(client, actions.create_org()["keys"]["test"]))
    assert other.outbox() == []


def test_guest_upgrade_keeps_the_queue_place_and_ends_the_guest_session(otp):
    tenant = otp.tenant
    queue = tenant.queue()
    ahead = tenant.guest()
    guest = tenant.guest()
    for g in (ahead, guest):
        tenant.client.post(f"/api/v1/queues/{queue['id']}/enter", headers=consumer(tenant.pk, g["accessToken"]))
    otp.request(email="upgrader@example.com")
    verified = otp.verify(headers=bearer(guest["accessToken"]), email="upgrader@example.com",
                          code=otp.last_code("upgrader@example.com"))
    assert verified.status_code == 200
    session = verified.json["session"]
    assert session["type"] == "otp" and session["guestId"] == guest["session"]["consumerId"]
    assert session["consumerId"].startswith("cons_")
    status = tenant.status(queue["id"], verified.json["accessToken"])
    assert status.status_code == 200
    assert status.json["position"] == 2 and status.json["consumerId"] == session["consumerId"]
    # The guest's session is over, and the admin view says where it went.
    assert tenant.status(queue["id"], guest["accessToken"]).json == {"error": "Authentication required"}
    assert tenant.refresh(guest["refreshToken"]).json["error"] == "refresh_token_invalid"
    admin = tenant.client.get(f"/api/v1/consumers/{guest['session']['consumerId']}", headers=secret(tenant.sk)).json
    assert admin["mergedInto"] == session["consumerId"]


def test_upgrade_with_an_invalid_or_identified_token_is_refused_and_consumes_nothing(otp):
    otp.request(email="careful@example.com")
    code = otp.last_code("careful@example.com")
    refused = otp.verify(headers=bearer("eyJnotatoken.x.y"), email="careful@example.com", code=code)
    assert refused.status_code == 401
    identified = otp.verify(email="careful@example.com", code=code)
    assert identified.status_code == 200
    otp.settings(otpCooldown=1)
    otp.cooldown_passes("careful@example.com")
    otp.request(email="careful@example.com")
    not_a_guest = otp.verify(headers=bearer(identified.json["accessToken"]), email="careful@example.com",
                             code=otp.last_code("careful@example.com"))
    assert not_a_guest.status_code == 401


@pytest.mark.gunicorn
def test_single_use_under_twenty_concurrent_verifies_on_gunicorn(live_server, actions, client):
    keys = actions.create_org()["keys"]["test"]
    url = live_server.url + "/api/v1/auth/otp"
    assert http("POST", url + "/request", publishable(keys["publishableKey"]), {"email": "race@example.com"}).status \
        == 202
    outbox = http("GET", live_server.url + "/api/v1/test/otp-messages", secret(keys["secretKey"])).body["data"]
    code = re.search(r"\b(\d{6})\b", outbox[0]["body"]).group(1)
    replies = race(20, lambda: http("POST", url + "/verify", publishable(keys["publishableKey"]),
                                    {"email": "race@example.com", "code": code}))
    statuses = sorted(r.status for r in replies)
    assert statuses == [200] + [401] * 19, [r.body for r in replies]
    assert {r.body["error"] for r in replies if r.status == 401} == {"otp_expired"}


# -- PostgreSQL's two-round-trip verify, and the races it must lose safely ---------------------

def stored(app, org_id: str, email: str) -> tuple[list, list]:
    """The consumers with this email in the organization, and their sessions."""
    with app.extensions["usher"].db.engine.connect() as connection:
        consumers = connection.execute(select(Consumer.id).where(Consumer.organization_id == org_id,
                                                                 Consumer.email == email)).scalars().all()
        sessions = connection.execute(select(AuthSession.id).where(AuthSession.consumer_id.in_(consumers))
                                      ).scalars().all()
    return consumers, sessions


def test_a_verify_is_two_statements_on_postgresql_and_one_locked_transaction_on_sqlite(otp, app):
    """Nobody listening and no guest: PostgreSQL reads the code (with its consumer) and then
    consumes it, creates the consumer and starts the session in one statement, both in
    autocommit; SQLite locks and writes in one transaction. A second sign-in finds the consumer."""
    otp.tenant.guest()  # the first signature makes the signing keys (writes of their own)
    otp.settings(otpCooldown=1)
    for attempt in range(2):
        otp.cooldown_passes("two@example.com")
        otp.request(email="two@example.com")
        code = otp.last_code("two@example.com")
        with Statements(app) as run:
            response = otp.verify(email="two@example.com", code=code)
        assert response.status_code == 200
        written = run.touching("otp_codes", "consumers", "sessions")
        if run.engine.dialect.name == "postgresql":
            assert len(written) == 2 and run.begins == []
            assert written[0].startswith("SELECT otp_codes.id") and "FOR UPDATE" not in written[0]
            assert written[1].startswith("WITH consumed") and "INSERT INTO sessions" in written[1]
            assert ("INSERT INTO consumers" in written[1]) is (attempt == 0)
        else:
            assert run.begins == [1], run.seen
            assert "FOR UPDATE" not in written[0]  # SQLite's write lock is the lock
            assert any(s.startswith("INSERT INTO sessions") for s in written)
    consumers, sessions = stored(app, otp.tenant.org_id, "two@example.com")
    assert len(consumers) == 1 and len(sessions) == 2
    assert otp.verify(email="two@example.com", code=code).json == OTP_EXPIRED  # single use


def test_a_code_consumed_between_read_and_write_writes_nothing_and_answers_expired(otp, app):
    on_postgresql(app)
    otp.request(email="raced@example.com")
    code = otp.last_code("raced@example.com")

    def consume(other):
        other.execute(update(OtpCode).where(OtpCode.identifier == "raced@example.com").values(consumed_at=utcnow()))

    with Statements(app, consume, at="WITH consumed") as run:
        response = otp.verify(email="raced@example.com", code=code)
    assert run.before is None  # the race happened
    assert response.status_code == 401 and response.json == OTP_EXPIRED
    assert stored(app, otp.tenant.org_id, "raced@example.com") == ([], [])
    assert any("FOR UPDATE" in s for s in run.seen)  # the locked path decided


def test_a_code_replaced_between_read_and_write_is_not_consumed_and_the_new_one_works(otp, app):
    on_postgresql(app)
    otp.request(email="swapped@example.com")
    old = otp.last_code("swapped@example.com")
    new = wrong(old)
    usher = app.extensions["usher"]

    def replace(other):  # what a new request stores: the new code's hash, tries reset
        other.execute(update(OtpCode).where(OtpCode.identifier == "swapped@example.com").values(
            code_hash=code_hash(usher.settings.app_secret, otp.tenant.org_id, "test", "swapped@example.com", new),
            attempts=0))

    with Statements(app, replace, at="WITH consumed") as run:
        response = otp.verify(email="swapped@example.com", code=old)
    assert run.before is None
    assert response.status_code == 401 and response.json == OTP_INVALID
    assert stored(app, otp.tenant.org_id, "swapped@example.com") == ([], [])
    assert otp.verify(email="swapped@example.com", code=new).status_code == 200


def test_a_consumer_created_between_read_and_write_is_the_one_signed_in(otp, app):
    on_postgresql(app)
    otp.request(email="twin@example.com")
    code = otp.last_code("twin@example.com")

    def create(other):
        other.execute(insert(Consumer).values(id="cons_made_meanwhile", organization_id=otp.tenant.org_id,
                                              mode="test", email="twin@example.com", created_at=utcnow()))

    with Statements(app, create, at="WITH consumed") as run:
        response = otp.verify(email="twin@example.com", code=code)
    assert run.before is None
    assert response.status_code == 200 and response.json["session"]["consumerId"] == "cons_made_meanwhile"
    consumers, sessions = stored(app, otp.tenant.org_id, "twin@example.com")
    assert consumers == ["cons_made_meanwhile"] and len(sessions) == 1
    assert otp.verify(email="twin@example.com", code=code).json == OTP_EXPIRED


def test_a_wrong_try_counts_only_against_the_code_it_was_compared_with(otp, app):
    """The two-round-trip path counts a wrong try with a conditional UPDATE: a code that was
    replaced after the read keeps its five tries."""
    on_postgresql(app)
    otp.settings(otpCooldown=1)
    otp.request(email="counted@example.com")
    code = otp.last_code("counted@example.com")
    engine = app.extensions["usher"].db.engine

    def replace(other):
        other.execute(update(OtpCode).where(OtpCode.identifier == "counted@example.com")
                      .values(code_hash="f" * 64, attempts=0))

    with Statements(app, replace, at="UPDATE otp_codes SET attempts") as run:
        assert otp.verify(email="counted@example.com", code=wrong(code)).json == OTP_INVALID
    assert run.before is None
    with engine.connect() as connection:
        assert connection.execute(select(OtpCode.attempts).where(
            OtpCode.identifier == "counted@example.com")).scalar_one() == 0


def test_a_verify_with_a_listener_writes_its_events_in_the_locked_transaction(otp, app):
    created = otp.client.post("/api/v1/webhook-endpoints", headers=secret(otp.tenant.sk),
                              json={"url": "http://127.0.0.1:9/usher", "events": ["session.created"]})
    assert created.status_code == 201, created.json
    otp.request(email="heard@example.com")
    code = otp.last_code("heard@example.com")
    with Statements(app) as run:
        response = otp.verify(email="heard@example.com", code=code)
    assert response.status_code == 200
    assert run.begins == [1] and not any(s.startswith("WITH consumed") for s in run.seen)
    assert any(s.startswith("INSERT INTO webhook_events") for s in run.seen)


def test_a_wrong_code_costs_the_same_statements_whatever_the_identifiers_history(otp, app):
    """Live code, spent code or none: one read and one conditional UPDATE (plus BEGIN/COMMIT on
    the locked path), so the time of a wrong guess does not tell whether someone asked for a code."""
    otp.request(email="live@example.com")
    otp.request(email="spent@example.com")
    spent = otp.last_code("spent@example.com")
    for _ in range(5):
        otp.verify(email="spent@example.com", code=wrong(spent))
    shapes = {}
    for email in ("live@example.com", "spent@example.com", "nobody@example.com"):
        with Statements(app) as run:
            assert otp.verify(email=email, code="000000").json == OTP_INVALID
        shapes[email] = ([s.split(" ")[0] for s in run.touching("otp_codes")], len(run.begins))
    assert shapes["live@example.com"] == shapes["spent@example.com"] == shapes["nobody@example.com"]
    assert shapes["nobody@example.com"][0] == ["SELECT", "UPDATE"]
