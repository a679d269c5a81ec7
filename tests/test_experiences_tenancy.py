"""Experiences, and the tenant lines: organization × mode."""

from __future__ import annotations

from tests.helpers import publishable, secret


def test_create_list_page_get_patch_delete(client, org, actions):
    sk = org["keys"]["test"]["secretKey"]
    created = [actions.create_experience(sk, name=f"Drop {i}") for i in range(5)]
    first = client.get("/api/v1/experiences?limit=2", headers=secret(sk)).json
    assert [e["id"] for e in first["data"]] == [c["id"] for c in created[:2]]
    assert first["hasMore"] is True
    rest = client.get(f"/api/v1/experiences?limit=10&startingAfter={first['data'][-1]['id']}",
                      headers=secret(sk)).json
    assert [e["id"] for e in rest["data"]] == [c["id"] for c in created[2:]]
    assert rest["hasMore"] is False

    target = created[0]["id"]
    patched = client.patch(f"/api/v1/experiences/{target}", headers=secret(sk),
                           json={"timeZone": "America/New_York", "closeAt": "2030-01-01T00:00:00+01:00",
                                 "theme": {"primaryColor": "#112233"}})
    assert patched.status_code == 200
    assert patched.json["name"] == "Drop 0"
    assert patched.json["closeAt"] == "2029-12-31T23:00:00Z"
    assert patched.json["theme"] == {"primaryColor": "#112233"}
    assert client.get(f"/api/v1/experiences/{target}", headers=secret(sk)).json == patched.json

    bad = client.patch(f"/api/v1/experiences/{target}", headers=secret(sk), json={"openAt": "2031-01-01T00:00:00Z"})
    assert bad.status_code == 400 and "closeAt" in bad.json["details"]

    assert client.delete(f"/api/v1/experiences/{target}", headers=secret(sk)).status_code == 204
    assert client.get(f"/api/v1/experiences/{target}", headers=secret(sk)).status_code == 404
    assert client.delete(f"/api/v1/experiences/{target}", headers=secret(sk)).status_code == 404


def test_modes_and_organizations_cannot_see_each_others_experiences(client, org, actions):
    other = actions.create_org("Other")
    test_exp = actions.create_experience(org["keys"]["test"]["secretKey"], name="test-mode drop")
    path = f"/api/v1/experiences/{test_exp['id']}"
    assert client.get(path, headers=publishable(org["keys"]["test"]["publishableKey"])).status_code == 200
    strangers = [
        publishable(org["keys"]["live"]["publishableKey"]), secret(org["keys"]["live"]["secretKey"]),
        publishable(other["keys"]["test"]["publishableKey"]), secret(other["keys"]["test"]["secretKey"]),
    ]
    for headers in strangers:
        response = client.get(path, headers=headers)
        assert response.status_code == 404
        assert response.json["error"] == "not_found"
    for headers in strangers[1::2]:
        assert client.patch(path, json={"name": "hijack"}, headers=headers).status_code == 404
        assert client.delete(path, headers=headers).status_code == 404
        listed = client.get("/api/v1/experiences", headers=headers).json["data"]
        assert test_exp["id"] not in [e["id"] for e in listed]
    assert client.get(path, headers=secret(org["keys"]["test"]["secretKey"])).json["name"] == "test-mode drop"


def test_settings_read_patch_and_ranges(client, org):
    sk = org["keys"]["test"]["secretKey"]
    defaults = {"accessTokenTtl": 3600, "refreshTokenTtl": 2592000, "otpTtl": 300, "otpLength": 6,
                "otpCooldown": 30, "otpRequestsPerHour": 5, "otpRequestsPerIpPerHour": 20,
                "otpVerifiesPerIpPerHour": 30, "allowedOrigins": ["http://localhost:*", "http://127.0.0.1:*"],
                "smsAllowedCountries": [], "smsPerHour": 1000, "botDefense": "off",
                "botDefenseRoutes": ["guest", "otp_request", "queue_enter"], "botDefenseSiteKey": None,
                "botDefenseSecretSet": False, "altchaComplexity": "auto"}
    assert client.get("/api/v1/settings", headers=secret(sk)).json == defaults
    patched = client.patch("/api/v1/settings", headers=secret(sk), json={"accessTokenTtl": 900, "otpLength": 8})
    assert patched.json == {**defaults, "accessTokenTtl": 900, "otpLength": 8}
    # Settings belong to the key's mode: live keeps its own (no local origins by default).
    assert client.get("/api/v1/settings", headers=secret(org["keys"]["live"]["secretKey"])).json == {
        **defaults, "allowedOrigins": []}
    for body in ({"accessTokenTtl": 0}, {"accessTokenTtl": 86401}, {"refreshTokenTtl": 59},
                 {"refreshTokenTtl": 365 * 86400 + 1}, {"otpTtl": 601}, {"otpLength": 5}, {"otpLength": 11},
                 {"otpLength": "six"}, {"otpCooldown": 0}, {"otpRequestsPerHour": 101},
                 {"otpRequestsPerIpPerHour": 0}, {"otpVerifiesPerIpPerHour": -1}, {"unknown": 1}):
        response = client.patch("/api/v1/settings", headers=secret(sk), json=body)
        assert response.status_code == 400, body
        assert set(response.json["details"]) == set(body)
    assert client.get("/api/v1/settings", headers=secret(sk)).json == patched.json
