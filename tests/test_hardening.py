"""Issue 12: one test per row of the attack round's table, named after the row.

Each of these failed on main before the fix (see CHANGELOG, "Hardening")."""

from __future__ import annotations

import http.client
import json
import threading
import types

import jwt
import limits.storage.memory
import pytest
from sqlalchemy import func, select

from app.models import Consumer, QueueEntry
from tests.helpers import TenantActions, consumer, publishable, secret
from tests.live import http as http_request
from tests.test_otp import OTP_INVALID, Otp, wrong
from tests.test_sessions import race


@pytest.fixture
def make_app(app_config):
    """Apps of their own (own limits storage), disposed after the test."""
    from app import create_app

    made = []

    def make(**config):
        made.append(create_app({**app_config, **config}))
        return made[-1]

    yield make
    for app in made:
        app.extensions["usher"].db.dispose()


@pytest.fixture
def otp(tenant) -> Otp:
    return Otp(tenant)


def _org(app) -> dict:
    from app.services.orgs import create_organization

    with app.extensions["usher"].db.transaction() as session:
        return create_organization(session, app.extensions["usher"].settings.app_secret, "Hardened")


# --- OTP verify tells who has signed in -------------------------------------------------------

def test_otp_verify_does_not_tell_who_has_signed_in(otp, monkeypatch):
    """A wrong code answers `otp_invalid` for an identifier that used a code, one whose code
    expired or died, and one that never asked; all spend the same failure budget; the known and
    the unknown identifier both compare one keyed hash."""
    import app.otp.check as otp_grant  # the decision on a code (the grant's policy, called by the store)

    otp.request(email="known@example.com")
    code = otp.last_code("known@example.com")
    assert otp.verify(email="known@example.com", code=code).status_code == 200  # the code is now used
    compared = []
    real = otp_grant.constant_time_equal
    monkeypatch.setattr(otp_grant, "constant_time_equal", lambda a, b: compared.append(1) or real(a, b))
    answers = {}
    for who in ("known@example.com", "unknown@example.com"):
        compared.clear()
        answers[who] = [otp.verify(email=who, code=wrong(code)) for _ in range(11)]
        assert len(compared) == 10, who  # one hash comparison per attempt that reached the grant
    for who, replies in answers.items():
        assert [r.json for r in replies[:10]] == [OTP_INVALID] * 10, who
        assert replies[10].status_code == 429 and replies[10].json["error"] == "rate_limited", who


# --- a test key changes live security ----------------------------------------------------------

def test_a_test_key_changes_live_security(client, org):
    """`PATCH /settings` with a test key changes test settings only; live tokens and live OTP
    limits keep theirs."""
    test, live = org["keys"]["test"], org["keys"]["live"]
    live_before = client.get("/api/v1/settings", headers=secret(live["secretKey"])).json
    patched = client.patch("/api/v1/settings", headers=secret(test["secretKey"]), json={
        "accessTokenTtl": 86400, "otpRequestsPerHour": 100, "otpRequestsPerIpPerHour": 100000,
        "otpVerifiesPerIpPerHour": 100000, "otpCooldown": 1})
    assert patched.status_code == 200 and patched.json["accessTokenTtl"] == 86400
    assert client.get("/api/v1/settings", headers=secret(live["secretKey"])).json == live_before
    assert live_before["accessTokenTtl"] == 3600 and live_before["otpRequestsPerIpPerHour"] == 20
    for keys, ttl in ((live, 3600), (test, 86400)):
        guest = client.post("/api/v1/auth/guest", headers=publishable(keys["publishableKey"])).json
        claims = jwt.decode(guest["accessToken"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == ttl, claims["mode"]
    live_patch = client.patch("/api/v1/settings", headers=secret(live["secretKey"]), json={"otpLength": 8})
    assert live_patch.json["otpLength"] == 8
    assert client.get("/api/v1/settings", headers=secret(test["secretKey"])).json["otpLength"] == 6


# --- one guest, many upgrades -------------------------------------------------------------------

def _one_verify_each(api: str, pk: str, guest_token: str, codes: dict):
    """A call for `race`: each thread verifies a different address with the same guest token."""
    pending, lock = iter(codes), threading.Lock()

    def verify():
        with lock:
            email = next(pending)
        return email, http_request("POST", api + "/auth/otp/verify", consumer(pk, guest_token),
                                   {"email": email, "code": codes[email]})

    return verify


def test_one_guest_many_upgrades(live_server, actions, client):
    """On gunicorn (4 workers): 5 concurrent OTP verifies for 5 addresses carrying one guest
    token. Exactly one upgrades the guest (its queue place and `mergedInto` name the same
    consumer); the others answer 401 and consume nothing: their codes still sign them in."""
    keys = actions.create_org()["keys"]["test"]
    pk, sk = keys["publishableKey"], keys["secretKey"]
    api = live_server.url + "/api/v1"
    for round_ in range(3):
        guest = http_request("POST", api + "/auth/guest", publishable(pk)).body
        queue = TenantActions(client, keys).queue()
        entered = http_request("POST", f"{api}/queues/{queue['id']}/enter", consumer(pk, guest["accessToken"]))
        assert entered.status == 200 and entered.body["position"] == 1
        emails = [f"up{round_}-{i}@example.com" for i in range(5)]
        for email in emails:
            assert http_request("POST", api + "/auth/otp/request", publishable(pk), {"email": email}).status == 202
        outbox = http_request("GET", api + "/test/otp-messages", secret(sk)).body["data"]
        codes = {email: next(m["body"] for m in outbox if m["to"] == email).split("code is ")[1][:6]
                 for email in emails}
        replies = race(5, _one_verify_each(api, pk, guest["accessToken"], codes))
        winners = [(email, r) for email, r in replies if r.status == 200]
        losers = [(email, r) for email, r in replies if r.status != 200]
        assert len(winners) == 1, [(e, r.status, r.body) for e, r in replies]
        assert [(r.status, r.body["error"]) for _, r in losers] == [(401, "Authentication required")] * 4
        winner = winners[0][1].body
        assert winner["session"]["guestId"] == guest["session"]["consumerId"]
        won = http_request("GET", f"{api}/queues/{queue['id']}/status", consumer(pk, winner["accessToken"]))
        assert won.status == 200 and won.body["position"] == 1
        merged = http_request("GET", f"{api}/consumers/{guest['session']['consumerId']}", secret(sk)).body
        assert merged["mergedInto"] == winner["session"]["consumerId"]
        for email, _ in losers:  # their codes were not consumed; they sign in, without a place
            again = http_request("POST", api + "/auth/otp/verify", publishable(pk),
                                 {"email": email, "code": codes[email]})
            assert again.status == 200, again.body
            assert http_request("GET", f"{api}/queues/{queue['id']}/status",
                        consumer(pk, again.body["accessToken"])).status == 404


# --- queue places for sale ----------------------------------------------------------------------

def test_queue_places_for_sale(otp, tenant, client, app):
    """An `identified` queue refuses guests (403 `identification_required`, nothing stored), so a
    farmed guest token cannot hand a buyer an early place."""
    queue = tenant.queue(admission="identified")
    assert queue["admission"] == "identified"
    assert client.get(f"/api/v1/queues/{queue['id']}", headers=secret(tenant.sk)).json["admission"] == "identified"
    listed = client.get(f"/api/v1/queues?experienceId={queue['experienceId']}", headers=secret(tenant.sk)).json
    assert [q["admission"] for q in listed["data"]] == ["identified"]
    assert tenant.queue()["admission"] == "any"
    bad = client.post("/api/v1/queues", json={"experienceId": queue["experienceId"], "name": "x", "admission": "vip"},
                      headers=secret(tenant.sk))
    assert bad.status_code == 400 and "admission" in bad.json["details"]

    farmed = tenant.guest()
    refused = client.post(f"/api/v1/queues/{queue['id']}/enter", headers=consumer(tenant.pk, farmed["accessToken"]))
    assert refused.status_code == 403 and refused.json["error"] == "identification_required"
    with app.extensions["usher"].db.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(QueueEntry)
                              .where(QueueEntry.queue_id == queue["id"])) == 0

    otp.request(email="first@example.com")
    first = otp.verify(email="first@example.com", code=otp.last_code("first@example.com")).json
    entered = client.post(f"/api/v1/queues/{queue['id']}/enter", headers=consumer(tenant.pk, first["accessToken"]))
    assert entered.status_code == 200 and entered.json["position"] == 1
    otp.request(email="buyer@example.com")
    buyer = otp.verify(email="buyer@example.com", code=otp.last_code("buyer@example.com"),
                       headers={"Authorization": f"Bearer {farmed['accessToken']}"}).json
    assert buyer["session"]["guestId"] == farmed["session"]["consumerId"]
    assert tenant.status(queue["id"], buyer["accessToken"]).status_code == 404  # no place came with the upgrade
    late = client.post(f"/api/v1/queues/{queue['id']}/enter", headers=consumer(tenant.pk, buyer["accessToken"]))
    assert late.status_code == 200 and late.json["position"] == 2


# --- 500 on ordinary hostile input --------------------------------------------------------------

def test_ordinary_hostile_input_is_400_not_500(tenant, client):
    deep = "[" * 5000 + "]" * 5000
    for path, wrapper in (("/api/v1/auth/otp/request", '{"email": %s}'), ("/api/v1/auth/otp/verify", '{"code": %s}'),
                          ("/api/v1/auth/refresh", '{"refreshToken": %s}'),
                          ("/api/v1/auth/external/exchange", '{"exchangeCode": %s}')):
        for body in (deep, wrapper % deep, '{"a": ' * 40 + "1" + "}" * 40):
            response = client.post(path, data=body, content_type="application/json", headers=publishable(tenant.pk))
            assert response.status_code == 400, (path, response.json)
            assert response.json["error"] == "validation_error", (path, response.json)
    long_code = client.post("/api/v1/auth/otp/verify", data='{"email": "a@example.com", "code": ' + "7" * 4301 + "}",
                            content_type="application/json", headers=publishable(tenant.pk))
    assert long_code.status_code == 400 and long_code.json["error"] == "validation_error"
    for number in ("1e999", "NaN", "-Infinity"):
        response = client.post("/api/v1/auth/otp/verify", data='{"email": "a@example.com", "code": ' + number + "}",
                               content_type="application/json", headers=publishable(tenant.pk))
        assert response.status_code == 400 and response.json["error"] == "validation_error", number

    experience = client.post("/api/v1/experiences", json={"name": "Drop"}, headers=secret(tenant.sk)).json
    for instant in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-01:00"):
        for path, body in (("/api/v1/experiences", {"name": "x", "openAt": instant}),
                           ("/api/v1/queues", {"experienceId": experience["id"], "name": "x", "openAt": instant})):
            response = client.post(path, json=body, headers=secret(tenant.sk))
            assert response.status_code == 400, (path, instant, response.json)
            assert response.json["error"] == "validation_error" and "openAt" in response.json["details"]
        patched = client.patch(f"/api/v1/experiences/{experience['id']}", json={"closeAt": instant},
                               headers=secret(tenant.sk))
        assert patched.status_code == 400 and "closeAt" in patched.json["details"]


# --- live codes in the log ----------------------------------------------------------------------

def test_live_codes_in_the_log(client, org, capsys, caplog):
    """With the default `console` sender, a live-mode code is never printed: 503, nothing sent."""
    live = Otp(TenantActions(client, org["keys"]["live"], org["organizationId"]))
    capsys.readouterr()
    for body in ({"email": "live@example.com"}, {"phone": "+12025550123"}):
        response = live.request(**body)
        assert response.status_code == 503 and response.json["error"] == "service_unavailable", response.json
        assert int(response.headers["Retry-After"]) > 0
    printed = capsys.readouterr()
    assert "verification code" not in printed.out + printed.err
    assert "verification code" not in caplog.text
    # Test mode still works with the same senders (its codes go to the test outbox).
    test = Otp(TenantActions(client, org["keys"]["test"], org["organizationId"]))
    assert test.request(email="test@example.com").status_code == 202


# --- limits leak across modes, IPv6, window edge -------------------------------------------------

def test_limits_leak_across_modes(make_app):
    """60 live guests from one address do not touch that address's test-mode budget."""
    app = make_app(GUEST_RATE_LIMIT="60 per minute")
    client, keys = app.test_client(), _org(app)["keys"]
    live = [client.post("/api/v1/auth/guest", headers=publishable(keys["live"]["publishableKey"])).status_code
            for _ in range(61)]
    assert live == [201] * 60 + [429]
    test = [client.post("/api/v1/auth/guest", headers=publishable(keys["test"]["publishableKey"])).status_code
            for _ in range(60)]
    assert test == [201] * 60


def test_ipv6_clients_are_limited_by_their_64(make_app):
    app = make_app(GUEST_RATE_LIMIT="3 per minute")
    client, pk = app.test_client(), _org(app)["keys"]["test"]["publishableKey"]

    def guest(address: str) -> int:
        return client.post("/api/v1/auth/guest", headers=publishable(pk),
                           environ_base={"REMOTE_ADDR": address}).status_code

    assert [guest(f"2001:db8:1:2::{n:x}") for n in (1, 2, 3)] == [201] * 3
    assert guest("2001:db8:1:2:ffff:ffff:ffff:ffff") == 429  # the same /64
    assert guest("2001:db8:1:3::1") == 201  # the next /64 is another client
    assert [guest("::ffff:192.0.2.7"), guest("192.0.2.7"), guest("192.0.2.7")] == [201, 201, 201]
    assert guest("::ffff:192.0.2.7") == 429  # an IPv4-mapped address is that IPv4 client


def test_window_edge(make_app, monkeypatch):
    """A client that spends its budget just before a window boundary cannot spend it again just
    after (fixed windows let it: twice the budget within a few seconds). The limits storage's
    clock is moved, not slept."""
    now = [1_800_000_000.0]
    monkeypatch.setattr(limits.storage.memory, "time", types.SimpleNamespace(time=lambda: now[0]))
    app = make_app(GUEST_RATE_LIMIT="10 per minute")
    client, pk = app.test_client(), _org(app)["keys"]["test"]["publishableKey"]

    def burst(count: int) -> int:
        return sum(client.post("/api/v1/auth/guest", headers=publishable(pk)).status_code == 201 for _ in range(count))

    assert burst(1) == 1
    now[0] += 58
    assert burst(20) == 9  # the rest of the budget, at the end of the first minute
    now[0] += 4  # just past the boundary of a one-minute window that began with the first request
    within_six_seconds = 1 + 9 + burst(20)
    assert within_six_seconds <= 11, within_six_seconds  # not 20
    now[0] += 120  # two quiet minutes later the whole budget is back
    assert burst(20) == 10


# --- trailing newline ---------------------------------------------------------------------------

def test_trailing_newline_in_subject(tenant, client, app):
    def authorize(subject: str):
        return client.post("/api/v1/auth/external/authorize", headers=secret(tenant.sk),
                           json={"provider": "shop", "issuer": "https://id.example.com", "subject": subject})

    good = authorize("u100")
    assert good.status_code == 201
    for subject in ("u100\n", "u100\r\n", "\nu100"):
        refused = authorize(subject)
        assert refused.status_code == 400 and "subject" in refused.json["details"], repr(subject)
    for field, value in (("provider", "shop\n"), ("codeChallenge", "a" * 43 + "\n")):
        body = {"provider": "shop", "issuer": "https://id.example.com", "subject": "u1", field: value}
        if field == "codeChallenge":
            body["codeChallengeMethod"] = "S256"
        refused = client.post("/api/v1/auth/external/authorize", headers=secret(tenant.sk), json=body)
        assert refused.status_code == 400 and field in refused.json["details"], field
    exchanged = client.post("/api/v1/auth/external/exchange", headers=publishable(tenant.pk),
                            json={"exchangeCode": good.json["exchangeCode"]})
    assert exchanged.status_code == 200
    with app.extensions["usher"].db.sessionmaker() as session:  # one consumer for u100, no second one
        assert session.scalar(select(func.count()).select_from(Consumer).where(
            Consumer.organization_id == tenant.org_id, Consumer.mode == "test")) == 1


# --- oversized chunked body ---------------------------------------------------------------------

def test_oversized_chunked_body(live_server, actions):
    """413 through gunicorn for a chunked body over MAX_CONTENT_LENGTH; a chunked body within it
    is read whole."""
    pk = actions.create_org()["keys"]["test"]["publishableKey"]

    def post_chunked(payload: bytes):
        connection = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=30)
        connection.putrequest("POST", "/api/v1/auth/otp/request")
        for name, value in (("Content-Type", "application/json"), ("Transfer-Encoding", "chunked"),
                            ("X-Publishable-Key", pk)):
            connection.putheader(name, value)
        connection.endheaders()
        for start in range(0, len(payload), 8192):
            chunk = payload[start:start + 8192]
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        connection.send(b"0\r\n\r\n")
        response = connection.getresponse()
        body = json.loads(response.read())
        connection.close()
        return response.status, body

    status, body = post_chunked(json.dumps({"email": "big@example.com", "pad": "x" * 70_000}).encode())
    assert (status, body["error"]) == (413, "payload_too_large")
    status, body = post_chunked(json.dumps({"email": "small@example.com"}).encode())
    assert status == 202, body


def test_migration_copies_todays_settings_to_both_modes(tmp_path):
    """`0005_settings_per_mode` on a database of today's shape: each organization's settings
    become its test and live settings (test also allows the local origins); downgrade restores
    one set (the live one)."""
    from alembic import command
    from sqlalchemy import create_engine, text

    from app.cli import alembic_config

    url = f"sqlite:///{tmp_path / 'before.sqlite3'}"
    config = alembic_config(url)
    command.upgrade(config, "0004")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO organizations (id, name, created_at, access_token_ttl, refresh_token_ttl, otp_ttl, "
            "otp_length, otp_cooldown, otp_requests_per_hour) "
            "VALUES ('org_1', 'Acme', '2026-01-01 00:00:00', 900, 86400, 120, 8, 45, 7)"))
    command.upgrade(config, "0005_settings_per_mode")
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT mode, access_token_ttl, refresh_token_ttl, otp_ttl, otp_length, otp_cooldown, "
            "otp_requests_per_hour, otp_requests_per_ip_per_hour, allowed_origins FROM organization_settings "
            "WHERE organization_id = 'org_1' ORDER BY mode")).all()
    assert [tuple(r[:8]) for r in rows] == [("live", 900, 86400, 120, 8, 45, 7, 20),
                                            ("test", 900, 86400, 120, 8, 45, 7, 20)]
    assert [json.loads(r[8]) for r in rows] == [[], ["http://localhost:*", "http://127.0.0.1:*"]]
    command.downgrade(config, "0004")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT access_token_ttl, otp_length FROM organizations")).all() == [(900, 8)]
    engine.dispose()
