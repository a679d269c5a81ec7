"""Bot defense (api.md, "Bot defense (drops)"): a mode's protected routes need a solved,
unused, unexpired challenge of that mode, refused before any work; captcha tokens are checked
at a siteverify URL (played here by a loopback HTTP server); "auto" ALTCHA complexity rises
with the mode's protected-request rate. The check across gunicorn workers is in
tests/test_redis_limits.py."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

import pytest
from altcha import solve_challenge_v1
from sqlalchemy import func, select

from app import create_app
from app.botdefense import auto_complexity
from app.models import (
    AuditEvent,
    CapturedMessage,
    Consumer,
    OrganizationSettings,
    QueueEntry,
)
from tests.helpers import TenantActions, consumer, publishable, secret
from tests.live import LoopbackHTTPServer


def settings(tenant: TenantActions, **body):
    return tenant.client.patch("/api/v1/settings", json=body, headers=secret(tenant.sk))


def challenge(tenant: TenantActions) -> dict:
    response = tenant.client.get("/api/v1/auth/challenge", headers=publishable(tenant.pk))
    assert response.status_code == 200, response.json
    assert response.headers["Cache-Control"] == "no-store"
    return response.json


def solve(tenant: TenantActions) -> str:
    """A fresh challenge of the tenant's mode, solved as the ALTCHA widget does."""
    issued = challenge(tenant)["challenge"]
    solution = solve_challenge_v1(issued["challenge"], issued["salt"], issued["algorithm"], issued["maxnumber"])
    assert solution is not None
    payload = {"algorithm": issued["algorithm"], "challenge": issued["challenge"], "number": solution.number,
               "salt": issued["salt"], "signature": issued["signature"]}
    return base64.b64encode(json.dumps(payload).encode()).decode()


def tampered(proof: str, **changes) -> str:
    payload = {**json.loads(base64.b64decode(proof)), **changes}
    return base64.b64encode(json.dumps(payload).encode()).decode()


def guest(tenant: TenantActions, proof: str | None = None):
    headers = publishable(tenant.pk) | ({"X-Usher-Challenge": proof} if proof is not None else {})
    return tenant.client.post("/api/v1/auth/guest", headers=headers)


def count(app, model, *criteria) -> int:
    with app.extensions["usher"].db.sessionmaker() as session:
        return session.scalar(select(func.count()).select_from(model).where(*criteria))


REFUSED = {"error": "challenge_required", "message": "Solve the challenge and send it again.",
           "details": {"provider": "altcha"}}


@pytest.fixture
def altcha(tenant):
    assert settings(tenant, botDefense="altcha", altchaComplexity=1000).status_code == 200
    return tenant


def test_off_by_default_asks_nothing(tenant):
    assert challenge(tenant) == {"provider": "off"}
    assert guest(tenant).status_code == 201
    body = tenant.client.get("/api/v1/settings", headers=secret(tenant.sk)).json
    assert {key: body[key] for key in ("botDefense", "botDefenseRoutes", "botDefenseSiteKey", "altchaComplexity",
                                       "botDefenseSecretSet")} == {
        "botDefense": "off", "botDefenseRoutes": ["guest", "otp_request", "queue_enter"],
        "botDefenseSiteKey": None, "altchaComplexity": "auto", "botDefenseSecretSet": False}


def test_altcha_challenge_is_the_altcha_format_and_signed_per_mode(altcha):
    body = challenge(altcha)
    assert body["provider"] == "altcha" and set(body["challenge"]) == {"algorithm", "challenge", "maxnumber",
                                                                        "salt", "signature"}
    assert body["challenge"]["algorithm"] == "SHA-256" and body["challenge"]["maxnumber"] == 1000
    expires = int(urllib.parse.parse_qs(body["challenge"]["salt"].split("?", 1)[1])["expires"][0])
    assert 295 <= expires - time.time() <= 301


def test_a_guest_needs_a_fresh_solved_challenge(altcha, app):
    consumers = count(app, Consumer, Consumer.organization_id == altcha.org_id)
    assert guest(altcha).json == REFUSED
    assert guest(altcha).status_code == 403
    assert count(app, Consumer, Consumer.organization_id == altcha.org_id) == consumers  # nothing made
    proof = solve(altcha)
    assert guest(altcha, proof).status_code == 201
    assert guest(altcha, proof).json == REFUSED  # a solution works once
    assert count(app, Consumer, Consumer.organization_id == altcha.org_id) == consumers + 1


@pytest.mark.parametrize("forge", ["wrong_number", "wrong_signature", "not_base64", "not_json", "sha1", "huge"])
def test_wrong_proofs_are_refused(altcha, forge):
    proof = solve(altcha)
    payload = json.loads(base64.b64decode(proof))
    bad = {"wrong_number": lambda: tampered(proof, number=payload["number"] + 1),
           "wrong_signature": lambda: tampered(proof, signature="0" * 64),
           "not_base64": lambda: "%%%not-base64%%%",
           "not_json": lambda: base64.b64encode(b"[1, 2").decode(),
           "sha1": lambda: tampered(proof, algorithm="SHA-1"),
           "huge": lambda: "A" * 9000}[forge]()
    response = guest(altcha, bad)
    assert response.status_code == 403 and response.json == REFUSED
    assert guest(altcha, proof).status_code == 201  # the real one still works: refusals spend nothing


def test_an_expired_solution_is_refused(altcha, app):
    proof = solve(altcha)
    app.extensions["usher"].clock.advance(301)
    try:
        assert guest(altcha, proof).json == REFUSED
    finally:
        app.extensions["usher"].clock.advance(-301)


def test_another_organizations_or_modes_solution_is_refused(altcha, client, actions, org):
    other_org = actions.create_org()
    other = TenantActions(client, other_org["keys"]["test"], other_org["organizationId"])
    live = TenantActions(client, org["keys"]["live"], org["organizationId"])
    for tenant in (other, live):
        assert settings(tenant, botDefense="altcha", altchaComplexity=1000).status_code == 200
    assert guest(other, solve(altcha)).json == REFUSED
    assert guest(live, solve(altcha)).json == REFUSED
    assert guest(altcha, solve(live)).json == REFUSED


def test_otp_request_needs_a_solution_and_sends_nothing_without(altcha, app):
    def request(proof=None):
        headers = publishable(altcha.pk) | ({"X-Usher-Challenge": proof} if proof else {})
        return altcha.client.post("/api/v1/auth/otp/request", json={"email": "bot@example.com"}, headers=headers)

    assert request().json == REFUSED
    assert request(tampered(solve(altcha), number=-1)).json == REFUSED
    assert count(app, CapturedMessage, CapturedMessage.organization_id == altcha.org_id) == 0
    assert request(solve(altcha)).status_code == 202
    assert count(app, CapturedMessage, CapturedMessage.organization_id == altcha.org_id) == 1


def test_queue_enter_needs_a_solution_and_makes_no_place_without(altcha, app):
    queue = altcha.queue()
    token = guest(altcha, solve(altcha)).json["accessToken"]
    url = f"/api/v1/queues/{queue['id']}/enter"
    assert altcha.client.post(url, headers=consumer(altcha.pk, token)).json == REFUSED
    assert count(app, QueueEntry, QueueEntry.queue_id == queue["id"]) == 0
    proof = solve(altcha)
    entered = altcha.client.post(url, headers=consumer(altcha.pk, token) | {"X-Usher-Challenge": proof})
    assert entered.status_code == 200 and entered.json["status"] == "QUEUED"
    again = altcha.client.post(url, headers=consumer(altcha.pk, token) | {"X-Usher-Challenge": proof})
    assert again.json == REFUSED
    assert count(app, QueueEntry, QueueEntry.queue_id == queue["id"]) == 1


def test_only_the_chosen_routes_are_protected(altcha):
    assert settings(altcha, botDefenseRoutes=["queue_enter"]).status_code == 200
    assert guest(altcha).status_code == 201
    assert settings(altcha, botDefenseRoutes=[]).status_code == 200
    assert guest(altcha).status_code == 201


def test_settings_are_validated(tenant):
    for body in ({"botDefense": "recaptcha"}, {"botDefenseRoutes": ["refresh"]},
                 {"botDefenseRoutes": ["guest", "guest"]}, {"altchaComplexity": 999}, {"altchaComplexity": "fast"},
                 {"altchaComplexity": 10_000_001},
                 {"altchaComplexity": True}, {"botDefense": "turnstile"},
                 {"botDefense": "hcaptcha", "botDefenseSiteKey": "site"}):
        field = next(iter(body))
        response = settings(tenant, **body)
        assert response.status_code == 400 and response.json["error"] == "validation_error", body
        assert field in response.json["details"], response.json
    assert challenge(tenant) == {"provider": "off"}  # nothing half-written
    assert settings(tenant, altchaComplexity="5000").json["altchaComplexity"] == 5000


def test_the_captcha_secret_is_write_only_sealed_and_audited_without_its_value(tenant, app):
    response = settings(tenant, botDefense="turnstile", botDefenseSiteKey="0x4-site", botDefenseSecret="0x4-SECRET-v1")
    assert response.status_code == 200, response.json
    assert "botDefenseSecret" not in response.json and response.json["botDefenseSecretSet"] is True
    assert "0x4-SECRET-v1" not in json.dumps(tenant.client.get("/api/v1/settings", headers=secret(tenant.sk)).json)
    assert challenge(tenant) == {"provider": "turnstile", "siteKey": "0x4-site"}
    with app.extensions["usher"].db.sessionmaker() as session:
        row = session.get_one(OrganizationSettings, (tenant.org_id, "test"))
        assert row.bot_defense_secret and b"0x4-SECRET-v1" not in row.bot_defense_secret
        events = session.scalars(select(AuditEvent).where(AuditEvent.organization_id == tenant.org_id,
                                                          AuditEvent.type == "settings.updated")).all()
    assert "0x4-SECRET-v1" not in json.dumps([event.details for event in events])
    assert events[-1].details["changes"]["botDefenseSecret"] == {"old": None, "new": "(sealed)"}
    # Changing the provider keeps the stored secret (no need to send it again).
    assert settings(tenant, botDefense="hcaptcha").status_code == 200


class Siteverify(BaseHTTPRequestHandler):
    """A captcha provider's siteverify: "good" passes, anything else fails; the form is kept."""

    forms: list[dict] = []  # noqa: RUF012 - the test reads what the handler instances saw
    delay = 0.0
    status = 200

    def do_POST(self):
        form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        type(self).forms.append({key: values[0] for key, values in form.items()})
        time.sleep(type(self).delay)
        body = json.dumps({"success": form.get("response") == ["good"]}).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


@pytest.fixture
def captcha(app_config, org):
    Siteverify.forms, Siteverify.delay, Siteverify.status = [], 0.0, 200
    with LoopbackHTTPServer(Siteverify) as provider:
        url = f"http://127.0.0.1:{provider.port}/siteverify"
        app = create_app({**app_config, "TURNSTILE_VERIFY_URL": url, "HCAPTCHA_VERIFY_URL": url + "?h"})
        tenant = TenantActions(app.test_client(), org["keys"]["test"], org["organizationId"])
        yield app, tenant, provider
        app.extensions["usher"].db.dispose()


@pytest.mark.parametrize("provider", ["turnstile", "hcaptcha"])
def test_captcha_tokens_are_checked_at_the_providers_siteverify(captcha, provider):
    _, tenant, _ = captcha
    assert settings(tenant, botDefense=provider, botDefenseSiteKey="site-1",
                    botDefenseSecret="s3cret").status_code == 200
    refused = {**REFUSED, "details": {"provider": provider}}
    assert guest(tenant).json == refused
    assert Siteverify.forms == []  # no token: the provider is not asked
    assert guest(tenant, "bad").json == refused
    assert guest(tenant, "good").status_code == 201
    assert Siteverify.forms[-1] == {"secret": "s3cret", "response": "good", "remoteip": "127.0.0.1",
                                    **({"sitekey": "site-1"} if provider == "hcaptcha" else {})}


def test_an_unreachable_or_failing_provider_is_503_never_a_pass(captcha, app_config, org):
    _, tenant, _ = captcha
    assert settings(tenant, botDefense="turnstile", botDefenseSiteKey="site", botDefenseSecret="s").status_code == 200
    Siteverify.status = 500
    assert guest(tenant, "good").json["error"] == "service_unavailable"
    Siteverify.status, Siteverify.delay = 200, 3.5
    started = time.monotonic()
    slow = guest(tenant, "good")
    assert slow.status_code == 503 and slow.headers["Retry-After"] == "5"
    assert time.monotonic() - started < 3.4  # the 3 s timeout, not the provider's pace
    Siteverify.delay = 0.0
    down = create_app({**app_config, "TURNSTILE_VERIFY_URL": "http://127.0.0.1:9/siteverify"})
    try:
        response = TenantActions(down.test_client(), org["keys"]["test"]).client.post(
            "/api/v1/auth/guest", headers=publishable(tenant.pk) | {"X-Usher-Challenge": "good"})
        assert response.status_code == 503 and response.json["error"] == "service_unavailable"
    finally:
        down.extensions["usher"].db.dispose()


def test_auto_complexity_follows_the_rate():
    assert [auto_complexity(rate) for rate in (0, 600, 1199, 1200, 1300, 2400, 4800, 10 ** 9)] == [
        50_000, 50_000, 50_000, 100_000, 100_000, 200_000, 400_000, 5_000_000]


def test_auto_complexity_at_least_doubles_under_a_burst(tenant):
    assert settings(tenant, botDefense="altcha").status_code == 200
    calm = challenge(tenant)["challenge"]["maxnumber"]
    assert calm == 50_000
    for _ in range(1300):  # a flood of protected requests without proofs: each counts
        assert guest(tenant).status_code == 403
    assert challenge(tenant)["challenge"]["maxnumber"] >= 2 * calm


def test_bot_defense_survives_an_app_secret_rotation(isolated_database_url):
    """The captcha secret is re-sealed by `secrets rotate` (and counted by `secrets status` until
    then); an ALTCHA challenge issued under the old secret still verifies on a host that has it
    as a fallback."""
    from app.services.app_secret import rotate, status
    from app.services.orgs import create_organization
    from tests.test_app_secret import NEW, OLD, app_on

    Siteverify.forms, Siteverify.delay, Siteverify.status = [], 0.0, 200
    with LoopbackHTTPServer(Siteverify) as provider:
        url = f"http://127.0.0.1:{provider.port}/siteverify"

        def host(app_secret: str, fallbacks: str = ""):
            app = app_on(isolated_database_url, app_secret, fallbacks)
            app.config.update(TESTING=True)
            app.extensions["usher"].bot_defense.checks["turnstile"].verify_url = url
            return app

        old = host(OLD)
        with old.extensions["usher"].db.transaction() as session:
            keys = create_organization(session, OLD, "Rotating")["keys"]
        turnstile = TenantActions(old.test_client(), keys["test"])
        altcha_mode = TenantActions(old.test_client(), keys["live"])
        assert settings(turnstile, botDefense="turnstile", botDefenseSiteKey="site",
                        botDefenseSecret="rotating-s3cret").status_code == 200
        assert settings(altcha_mode, botDefense="altcha", altchaComplexity=1000).status_code == 200
        issued_under_old = solve(altcha_mode)
        old.extensions["usher"].db.dispose()

        rotating = host(NEW, OLD)
        assert guest(TenantActions(rotating.test_client(), keys["test"]), "good").status_code == 201
        assert Siteverify.forms[-1]["secret"] == "rotating-s3cret"  # opened with the fallback
        assert guest(TenantActions(rotating.test_client(), keys["live"]), issued_under_old).status_code == 201
        usher = rotating.extensions["usher"]
        assert status(usher.db, usher.settings)["fallbacks"][0]["rows"] >= 1
        assert rotate(usher.db, usher.settings)["resealed"] >= 1
        rotating.extensions["usher"].db.dispose()

        new = host(NEW)
        assert guest(TenantActions(new.test_client(), keys["test"]), "good").status_code == 201
        assert Siteverify.forms[-1]["secret"] == "rotating-s3cret"  # re-sealed with the new secret
        new.extensions["usher"].db.dispose()
