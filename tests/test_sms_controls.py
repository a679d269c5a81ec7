"""SMS cost controls: the countries a mode may text and its hourly budget, checked before any
sender is called; email is not affected."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models import OtpCode
from tests.helpers import TenantActions, publishable, secret


@pytest.fixture
def sends(app, monkeypatch) -> list[tuple[str, str]]:
    """Every (channel, recipient) handed to a sender, recorded on the way."""
    senders = app.extensions["usher"].senders
    original = senders.for_message
    seen: list[tuple[str, str]] = []

    def spy(channel, mode):
        sender = original(channel, mode)

        class Recording:
            name = sender.name

            def send(self, message):
                seen.append((message.channel, message.to))
                return sender.send(message)

        return Recording()

    monkeypatch.setattr(senders, "for_message", spy)
    return seen


def request(tenant: TenantActions, **body):
    return tenant.client.post("/api/v1/auth/otp/request", json=body, headers=publishable(tenant.pk))


def patch_settings(tenant: TenantActions, **values):
    return tenant.client.patch("/api/v1/settings", json=values, headers=secret(tenant.sk))


def stored_codes(app, organization_id: str) -> list[str]:
    with app.extensions["usher"].db.transaction() as session:
        return list(session.scalars(select(OtpCode.identifier).where(OtpCode.organization_id == organization_id)))


def test_defaults_validation_and_settings_per_mode(client, org, tenant):
    settings = client.get("/api/v1/settings", headers=secret(tenant.sk)).json
    assert settings["smsAllowedCountries"] == [] and settings["smsPerHour"] == 1000
    for bad in (["XX"], ["us"], ["USA"], ["001"], [""], "US"):
        response = patch_settings(tenant, smsAllowedCountries=bad)
        assert response.status_code == 400 and "smsAllowedCountries" in response.json["details"], bad
    for bad in (0, -1, 1_000_001, "many"):
        assert patch_settings(tenant, smsPerHour=bad).status_code == 400
    changed = patch_settings(tenant, smsAllowedCountries=["US", "GB"], smsPerHour=50)
    assert changed.status_code == 200
    assert (changed.json["smsAllowedCountries"], changed.json["smsPerHour"]) == (["US", "GB"], 50)
    live = client.get("/api/v1/settings", headers=secret(org["keys"]["live"]["secretKey"])).json
    assert (live["smsAllowedCountries"], live["smsPerHour"]) == ([], 1000)  # a test key never changes live
    event = client.get("/api/v1/audit-events?type=settings.updated", headers=secret(tenant.sk)).json["data"][0]
    assert event["details"]["changes"] == {"smsAllowedCountries": {"old": [], "new": ["US", "GB"]},
                                           "smsPerHour": {"old": 1000, "new": 50}}


def test_a_phone_outside_the_list_is_refused_before_any_sender_and_stores_nothing(app, org, tenant, sends):
    assert patch_settings(tenant, smsAllowedCountries=["US", "GB"]).status_code == 200
    for phone in ("+33612345678", "+16847331234"):  # France; American Samoa shares +1 but is not US
        refused = request(tenant, phone=phone)
        assert refused.status_code == 400
        assert refused.json == {"error": "phone_country_not_allowed",
                                "message": "Codes cannot be sent to phone numbers of this country."}
    national = request(tenant, phone="06 12 34 56 78", defaultCountry="FR")
    assert national.status_code == 400 and national.json["error"] == "phone_country_not_allowed"
    assert sends == [] and stored_codes(app, org["organizationId"]) == []
    assert request(tenant, phone="+447400123456").status_code == 202
    assert request(tenant, phone="(202) 555-1234", defaultCountry="US").status_code == 202
    assert request(tenant, email="ann@example.fr").status_code == 202  # email is not affected
    assert sends == [("sms", "+447400123456"), ("sms", "+12025551234"), ("email", "ann@example.fr")]
    # An empty list means every country again.
    assert patch_settings(tenant, smsAllowedCountries=[]).status_code == 200
    assert request(tenant, phone="+33612345678").status_code == 202


def test_past_the_hourly_budget_sms_is_429_and_no_sender_is_called(app, client, actions, tenant, sends):
    assert patch_settings(tenant, smsPerHour=3).status_code == 200
    phones = ["+12025551234", "+12025551235", "+12025551236", "+12025551237"]
    assert [request(tenant, phone=phone).status_code for phone in phones[:3]] == [202, 202, 202]
    over = request(tenant, phone=phones[3])
    assert over.status_code == 429 and over.json["error"] == "rate_limited"
    assert int(over.headers["Retry-After"]) >= 1
    assert [to for _channel, to in sends] == phones[:3]
    assert phones[3] not in stored_codes(app, tenant.org_id)
    assert request(tenant, email="bob@example.com").status_code == 202  # email is not affected
    # Another organization's budget is its own.
    other = TenantActions(client, actions.create_org("Other")["keys"]["test"])
    assert request(other, phone=phones[3]).status_code == 202


def test_a_refused_country_does_not_spend_the_budget(tenant, sends):
    assert patch_settings(tenant, smsPerHour=1, smsAllowedCountries=["GB"]).status_code == 200
    assert request(tenant, phone="+33612345678").status_code == 400
    assert request(tenant, phone="+447400123456").status_code == 202
    assert request(tenant, phone="+447400123457").status_code == 429
    assert [to for _channel, to in sends] == ["+447400123456"]
