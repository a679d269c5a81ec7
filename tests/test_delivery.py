"""Live-mode delivery through a real SMTP server and a real HTTP webhook on loopback."""

from __future__ import annotations

import logging
import re
import time

import pytest

from app import create_app
from tests.helpers import TenantActions, publishable, secret
from tests.peers import SmtpPeer, WebhookPeer
from tests.test_otp import Otp


@pytest.fixture
def peers():
    with SmtpPeer() as smtp, WebhookPeer() as webhook:
        yield smtp, webhook


def _app(app_config, smtp_port: int, webhook_url: str, **extra):
    return create_app({**app_config, "OTP_EMAIL_SENDER": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp_port,
                       "OTP_EMAIL_FROM": "Acme <codes@acme.test>", "OTP_SMS_SENDER": "webhook",
                       "SMS_WEBHOOK_URL": webhook_url, **extra})


@pytest.fixture
def live_otp(app_config, actions, peers):
    smtp, webhook = peers
    app = _app(app_config, smtp.port, webhook.url)
    org = actions.create_org("Acme")
    yield Otp(TenantActions(app.test_client(), org["keys"]["live"], org["organizationId"])), org, smtp, webhook
    app.extensions["usher"].db.dispose()


def our_log(caplog) -> str:
    """What Usher logged (the SMTP peer's own debug log shows the message, by design)."""
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail"))


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_email_code_arrives_over_smtp_and_signs_in(live_otp, caplog):
    caplog.set_level(logging.DEBUG)
    otp, _, smtp, webhook = live_otp
    assert otp.request(email="Ann@Example.com").status_code == 202
    assert _wait(lambda: smtp.messages)
    email = smtp.messages[0]
    assert email["To"] == "ann@example.com" and email["From"] == "Acme <codes@acme.test>"
    code = re.search(r"\b(\d{6})\b", email.get_payload()).group(1)
    verified = otp.verify(email="ann@example.com", code=code)
    assert verified.status_code == 200 and verified.json["session"]["type"] == "otp"
    assert webhook.requests == []
    assert code not in our_log(caplog)  # logs hold no code in live mode


def test_sms_code_reaches_the_webhook_in_e164_and_signs_in(live_otp, caplog):
    caplog.set_level(logging.INFO)
    otp, _, smtp, webhook = live_otp
    assert otp.request(phone="(202) 555-1234", defaultCountry="US").status_code == 202
    assert len(webhook.requests) == 1
    sent = webhook.requests[0]
    assert sent["path"] == "/sms" and sent["json"]["to"] == "+12025551234"
    assert set(sent["json"]) == {"to", "body"} and sent["headers"]["Idempotency-Key"]
    code = re.search(r"\b(\d{6})\b", sent["json"]["body"]).group(1)
    assert otp.verify(phone="+1 202 555 1234", code=code).status_code == 200
    assert smtp.messages == []
    assert code not in our_log(caplog)


def test_test_mode_captures_and_never_sends(app_config, actions, peers):
    smtp, webhook = peers
    app = _app(app_config, smtp.port, webhook.url)
    org = actions.create_org()
    otp = Otp(TenantActions(app.test_client(), org["keys"]["test"], org["organizationId"]))
    assert otp.request(email="ann@example.com").status_code == 202
    assert otp.request(phone="+12025551234").status_code == 202
    # Delivery is synchronous (both peers record a message before they answer), so nothing to wait for.
    assert smtp.messages == [] and webhook.requests == []
    assert {m["to"] for m in otp.outbox()} == {"ann@example.com", "+12025551234"}
    # The same requests in live mode reach both peers by the time the 202 is back.
    live = Otp(TenantActions(app.test_client(), org["keys"]["live"], org["organizationId"]))
    assert live.request(email="ann@example.com").status_code == 202
    assert live.request(phone="+12025551234").status_code == 202
    assert [m["To"] for m in smtp.messages] == ["ann@example.com"]
    assert [r["json"]["to"] for r in webhook.requests] == ["+12025551234"]
    app.extensions["usher"].db.dispose()


def test_sender_failure_is_503_stores_nothing_gives_the_cooldown_back_and_logs_no_code(app_config, actions, caplog):
    # That an earlier code keeps working after a failed resend: test_previous_code_survives_a_failed_resend.
    caplog.set_level(logging.INFO)
    with SmtpPeer() as smtp, WebhookPeer(status=500) as failing:
        app = _app(app_config, smtp.port, failing.url)
        org = actions.create_org()
        otp = Otp(TenantActions(app.test_client(), org["keys"]["live"], org["organizationId"]))
        # The SMS webhook answers 500: the code it was sent must not work, and the log must not hold it.
        response = otp.request(phone="+12025551234")
        assert response.status_code == 503
        assert response.json["error"] == "service_unavailable" and response.headers["Retry-After"]
        assert len(failing.requests) == 1  # an answered request is never sent again
        body = failing.requests[0]["json"]["body"]
        code = re.search(r"\b(\d{6})\b", body).group(1)
        assert code not in our_log(caplog)
        assert otp.verify(phone="+12025551234", code=code).json["error"] == "otp_invalid"  # nothing stored
        # The cooldown (30 s by default) was given back: asking again right away is not 429.
        again = otp.request(phone="+12025551234")
        assert again.status_code == 503
        app.extensions["usher"].db.dispose()


def test_webhook_that_cannot_be_reached_is_retried_then_503_quickly(app_config, actions):
    from tests.live import free_port

    app = _app(app_config, free_port(), f"http://127.0.0.1:{free_port()}/sms")
    org = actions.create_org()
    otp = Otp(TenantActions(app.test_client(), org["keys"]["live"], org["organizationId"]))
    started = time.monotonic()
    response = otp.request(phone="+12025551234")
    assert response.status_code == 503
    assert time.monotonic() - started < 3
    smtp_down = otp.request(email="ann@example.com")
    assert smtp_down.status_code == 503 and smtp_down.json["error"] == "service_unavailable"
    app.extensions["usher"].db.dispose()


def test_previous_code_survives_a_failed_resend(app_config, actions):
    with SmtpPeer() as smtp, WebhookPeer() as webhook:
        app = _app(app_config, smtp.port, webhook.url)
        org = actions.create_org()
        otp = Otp(TenantActions(app.test_client(), org["keys"]["live"], org["organizationId"]))
        otp.settings(otpCooldown=1)
        assert otp.request(phone="+12025551234").status_code == 202
        code = re.search(r"\b(\d{6})\b", webhook.requests[0]["json"]["body"]).group(1)
        webhook.status = 500
        otp.cooldown_passes("+12025551234")
        assert otp.request(phone="+12025551234").status_code == 503
        assert otp.verify(phone="+12025551234", code=code).status_code == 200
        app.extensions["usher"].db.dispose()


def test_live_publishable_key_cannot_read_codes_anywhere(live_otp):
    otp, org, _, _ = live_otp
    response = otp.client.get("/api/v1/test/otp-messages", headers=secret(org["keys"]["live"]["secretKey"]))
    assert response.status_code == 403
    response = otp.client.get("/api/v1/test/otp-messages", headers=publishable(org["keys"]["live"]["publishableKey"]))
    assert response.status_code == 403 and response.json == {"error": "Secret key required"}
