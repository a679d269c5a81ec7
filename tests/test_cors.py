"""Issue 10: browsers on a shop's own domain (CORS per organization and mode) and the headers
every response carries. The real-browser journey is in test_browser.py, nginx in test_nginx.py."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.models import CapturedMessage, Consumer
from tests.helpers import TenantActions, consumer, publishable, secret

SHOP = "https://shop.example.com"
ALLOW_HEADERS = {"authorization", "content-type", "x-publishable-key", "x-request-id", "x-usher-challenge"}


def _cors(response) -> dict:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def _settings(client, sk: str, **values):
    response = client.patch("/api/v1/settings", json=values, headers=secret(sk))
    assert response.status_code == 200, response.json
    return response.json


def _count(app, model, org_id: str, mode: str) -> int:
    with app.extensions["usher"].db.sessionmaker() as session:
        return session.scalar(select(func.count()).select_from(model).where(model.organization_id == org_id,
                                                                            model.mode == mode))


@pytest.mark.parametrize("path,method", [("/api/v1/auth/guest", "POST"), ("/api/v1/auth/otp/request", "POST"),
                                         ("/api/v1/auth/otp/verify", "POST"), ("/api/v1/auth/refresh", "POST"),
                                         ("/api/v1/auth/external/exchange", "POST"), ("/api/v1/auth/logout", "POST"),
                                         ("/api/v1/experiences/exp_01HXYZ123456789ABCDEFGHJK", "GET"),
                                         ("/api/v1/queues/queue_01HXYZ123456789ABCDEFGHJK", "GET"),
                                         ("/api/v1/queues/queue_01HXYZ123456789ABCDEFGHJK/enter", "POST"),
                                         ("/api/v1/queues/queue_01HXYZ123456789ABCDEFGHJK/status", "GET"),
                                         ("/api/v1/queues/queue_01HXYZ123456789ABCDEFGHJK/leave", "POST")])
def test_preflight_on_every_consumer_route_echoes_any_origin(client, path, method):
    """A preflight carries no key: it allows the method and the headers, for any origin."""
    for origin in (SHOP, "https://anything.example.net"):
        response = client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                                 "Access-Control-Request-Headers": "x-publishable-key, content-type"})
        assert response.status_code == 204 and response.data == b""
        assert response.headers["Access-Control-Allow-Origin"] == origin
        assert method in response.headers["Access-Control-Allow-Methods"]
        assert {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")} \
            == ALLOW_HEADERS
        assert response.headers["Access-Control-Max-Age"] == "600"
        assert "Origin" in response.headers.get_all("Vary") or "Origin" in response.headers["Vary"]
        assert "Access-Control-Allow-Credentials" not in response.headers


def test_preflight_on_an_unknown_route_is_not_a_204(client):
    response = client.options("/api/v1/queues/queue_01HXYZ123456789ABCDEFGHJK/nope",
                              headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"})
    assert response.status_code == 404


def test_test_mode_allows_local_origins_and_live_none_by_default(client, org, app):
    test, live = org["keys"]["test"], org["keys"]["live"]
    for origin in ("http://localhost:3000", "http://127.0.0.1:5173", "http://localhost"):
        response = client.post("/api/v1/auth/guest", headers={**publishable(test["publishableKey"]), "Origin": origin})
        assert response.status_code == 201, origin
        assert response.headers["Access-Control-Allow-Origin"] == origin
        assert "Origin" in response.headers["Vary"]
        exposed = {h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
        assert exposed == {"x-request-id", "retry-after"}
    for origin in ("https://localhost:3000", "http://localhost.evil.example", SHOP):
        refused = client.post("/api/v1/auth/guest", headers={**publishable(test["publishableKey"]), "Origin": origin})
        assert refused.status_code == 403 and refused.json["error"] == "origin_not_allowed", origin
    before = _count(app, Consumer, org["organizationId"], "live")
    refused = client.post("/api/v1/auth/guest", headers={**publishable(live["publishableKey"]),
                                                         "Origin": "http://localhost:3000"})
    assert refused.status_code == 403 and refused.json == {
        "error": "origin_not_allowed", "message": "This origin may not call the API with this key."}
    # The refusal is readable by the page that was refused (and nothing else is; see below).
    assert _cors(refused) == {"Access-Control-Allow-Origin": "http://localhost:3000",
                              "Access-Control-Expose-Headers": "Retry-After, X-Request-Id"}
    assert "Origin" in refused.headers["Vary"]
    assert _count(app, Consumer, org["organizationId"], "live") == before  # no session, no consumer
    # Servers and mobile apps send no Origin: not affected.
    assert client.post("/api/v1/auth/guest", headers=publishable(live["publishableKey"])).status_code == 201


def test_exact_wildcard_and_look_alike_origins(client, tenant):
    _settings(client, tenant.sk, allowedOrigins=[SHOP, "https://*.brand.example", "http://localhost:*"])

    def guest(origin: str):
        return client.post("/api/v1/auth/guest", headers={**publishable(tenant.pk), "Origin": origin})

    for origin in (SHOP, "https://SHOP.example.com", "https://shop.example.com:443", "https://eu.brand.example",
                   "https://a.b.brand.example", "http://localhost:8080"):
        response = guest(origin)
        assert response.status_code == 201, origin
        assert response.headers["Access-Control-Allow-Origin"] == origin
    for origin in ("https://shop.example.com.evil.example", "https://evilshop.example.com", "http://shop.example.com",
                   "https://shop.example.com:8443", "https://brand.example", "https://evilbrand.example",
                   "https://brand.example.evil", "http://127.0.0.1:8080", "null", "https://shop.example.com/x"):
        response = guest(origin)
        assert response.status_code == 403 and response.json["error"] == "origin_not_allowed", origin
        assert _cors(response)["Access-Control-Allow-Origin"] == origin, origin  # readable: the refusal only


def test_allowed_origins_validation_names_the_bad_entry(client, tenant):
    assert _settings(client, tenant.sk, allowedOrigins=[])["allowedOrigins"] == []
    for bad in ("*", "https://*", "https://shop.example.com/", "https://shop.example.com/path", "ftp://shop.example.com",
                "shop.example.com", "https://shop.example.com:99999", "https://user@shop.example.com",
                "https://shop.example.com?x=1", "https://*.com", "https://sh*p.example.com", " https://a.example",
                "https://shop.example.com:80:80", "javascript:alert(1)"):
        response = client.patch("/api/v1/settings", json={"allowedOrigins": [SHOP, bad]}, headers=secret(tenant.sk))
        assert response.status_code == 400 and response.json["error"] == "validation_error", bad
        assert repr(bad) in str(response.json["details"]["allowedOrigins"]), (bad, response.json)
    too_many = [f"https://s{i}.example.com" for i in range(51)]
    response = client.patch("/api/v1/settings", json={"allowedOrigins": too_many}, headers=secret(tenant.sk))
    assert response.status_code == 400 and "allowedOrigins" in response.json["details"]
    assert client.get("/api/v1/settings", headers=secret(tenant.sk)).json["allowedOrigins"] == []


def test_a_refused_origin_changes_nothing(client, org, app):
    """No code sent, nothing stored, nothing spent from a limit."""
    tenant = TenantActions(client, org["keys"]["test"], org["organizationId"])
    _settings(client, tenant.sk, allowedOrigins=[SHOP], otpRequestsPerIpPerHour=1)
    evil = {**publishable(tenant.pk), "Origin": "https://evil.example"}
    for _ in range(3):
        refused = client.post("/api/v1/auth/otp/request", json={"email": "ann@example.com"}, headers=evil)
        assert refused.status_code == 403 and refused.json["error"] == "origin_not_allowed"
    assert _count(app, CapturedMessage, org["organizationId"], "test") == 0
    allowed = client.post("/api/v1/auth/otp/request", json={"email": "ann@example.com"},
                          headers={**publishable(tenant.pk), "Origin": SHOP})
    assert allowed.status_code == 202  # the per-address budget of 1 was not spent by the refusals
    assert _count(app, CapturedMessage, org["organizationId"], "test") == 1
    guest = tenant.guest()
    queue = tenant.queue()
    refused = client.post(f"/api/v1/queues/{queue['id']}/enter",
                          headers={**consumer(tenant.pk, guest["accessToken"]), "Origin": "https://evil.example"})
    assert refused.status_code == 403 and refused.json["error"] == "origin_not_allowed"
    assert tenant.status(queue["id"], guest["accessToken"]).status_code == 404  # never entered


def test_secret_key_endpoints_never_send_cors_headers(client, tenant):
    _settings(client, tenant.sk, allowedOrigins=[SHOP])
    origin = {"Origin": SHOP}
    guest = client.post("/api/v1/auth/guest", headers={**publishable(tenant.pk), **origin})
    assert guest.headers["Access-Control-Allow-Origin"] == SHOP
    queue = tenant.queue()
    answers = [
        client.get("/api/v1/settings", headers={**secret(tenant.sk), **origin}),
        client.get("/api/v1/keys", headers={**secret(tenant.sk), **origin}),
        client.get(f"/api/v1/queues/{queue['id']}", headers={**secret(tenant.sk), **origin}),
        client.post("/api/v1/auth/external/authorize", headers={**secret(tenant.sk), **origin},
                    json={"provider": "shop", "issuer": "https://id.example.com", "subject": "u1"}),
        client.get("/api/v1/test/otp-messages", headers={**secret(tenant.sk), **origin}),
        client.post("/oauth/introspect", data={"token": guest.json["accessToken"]}, headers={**secret(tenant.sk),
                                                                                             **origin}),
        client.post("/oauth/revoke", data={"token": "x"}, headers={**secret(tenant.sk), **origin}),
        client.options("/api/v1/settings", headers={**origin, "Access-Control-Request-Method": "PATCH"}),
        client.options("/oauth/introspect", headers={**origin, "Access-Control-Request-Method": "POST"}),
        client.get("/api/v1/settings", headers=origin),  # no credential at all
    ]
    for response in answers:
        assert response.status_code < 500
        assert _cors(response) == {}, (response.request.path, _cors(response))
    assert answers[2].status_code == 200 and answers[3].status_code == 201


def test_well_known_answers_any_origin(client):
    response = client.get("/.well-known/jwks.json", headers={"Origin": "https://anyone.example"})
    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == "*"


def test_nosniff_everywhere_and_no_store_on_every_token_key_code_and_message(client, tenant):
    _settings(client, tenant.sk, allowedOrigins=[])
    no_store = []
    guest = client.post("/api/v1/auth/guest", headers=publishable(tenant.pk))
    no_store.append(guest)
    no_store.append(client.post("/api/v1/auth/refresh", headers=publishable(tenant.pk),
                                json={"refreshToken": guest.json["refreshToken"]}))
    client.post("/api/v1/auth/otp/request", headers=publishable(tenant.pk), json={"email": "c@example.com"})
    messages = client.get("/api/v1/test/otp-messages", headers=secret(tenant.sk))
    no_store.append(messages)
    code = messages.json["data"][0]["body"].split("code is ")[1][:6]
    no_store.append(client.post("/api/v1/auth/otp/verify", headers=publishable(tenant.pk),
                                json={"email": "c@example.com", "code": code}))
    authorized = client.post("/api/v1/auth/external/authorize", headers=secret(tenant.sk),
                             json={"provider": "shop", "issuer": "https://id.example.com", "subject": "u2"})
    no_store.append(authorized)
    no_store.append(client.post("/api/v1/auth/external/exchange", headers=publishable(tenant.pk),
                                json={"exchangeCode": authorized.json["exchangeCode"]}))
    created = client.post("/api/v1/keys", headers=secret(tenant.sk), json={"type": "publishable"})
    no_store.append(created)
    no_store.append(client.post(f"/api/v1/keys/{created.json['id']}/roll", headers=secret(tenant.sk),
                                json={"expiresIn": 0}))
    no_store.append(client.post("/oauth/introspect", data={"token": guest.json["accessToken"]},
                                headers=secret(tenant.sk)))
    for response in no_store:
        assert response.status_code in (200, 201, 202), (response.request.path, response.json)
        assert response.headers["Cache-Control"] == "no-store", response.request.path
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    others = [client.get("/openapi.json"), client.get("/docs"), client.get("/.well-known/jwks.json"),
              client.get("/api/v1/nope"), client.post("/api/v1/auth/guest"), client.get("/healthz"),
              client.get("/docs/assets/swagger-ui.css")]
    for response in others:
        assert response.headers["X-Content-Type-Options"] == "nosniff", response.request.path
        response.close()


def test_swagger_ui_keeps_no_pasted_credentials(client):
    page = client.get("/docs").get_data(as_text=True)
    assert "persistAuthorization" not in page


def test_a_page_can_read_its_401_when_its_origin_is_allowed(client, tenant):
    """An expired or revoked access token answers 401 with CORS headers when the publishable key
    allows the origin (the page then refreshes); an unknown key or another origin gets none."""
    _settings(client, tenant.sk, allowedOrigins=[SHOP])
    queue = tenant.queue()
    guest = tenant.guest()
    client.post("/api/v1/auth/logout", headers={**consumer(tenant.pk, guest["accessToken"])})
    path = f"/api/v1/queues/{queue['id']}/status"
    dead = client.get(path, headers={**consumer(tenant.pk, guest["accessToken"]), "Origin": SHOP})
    assert dead.status_code == 401 and dead.headers["Access-Control-Allow-Origin"] == SHOP
    garbage = client.get(path, headers={**consumer(tenant.pk, "eyJnot.a.token"), "Origin": SHOP})
    assert garbage.status_code == 401 and garbage.headers["Access-Control-Allow-Origin"] == SHOP
    other = client.get(path, headers={**consumer(tenant.pk, guest["accessToken"]), "Origin": "https://evil.example"})
    assert other.status_code == 401 and _cors(other) == {}
    unknown = client.get(path, headers={**consumer("pk_test_unknown", guest["accessToken"]), "Origin": SHOP})
    assert unknown.status_code == 401 and _cors(unknown) == {}


def test_docs_can_be_switched_off(app_config):
    from app import create_app

    app = create_app({**app_config, "DOCS_ENABLED": "false"})
    client = app.test_client()
    assert client.get("/docs").status_code == 404
    assert client.get("/docs/assets/swagger-ui.css").status_code == 404
    assert client.get("/openapi.json").status_code == 200
    app.extensions["usher"].db.dispose()


def test_the_openapi_document_lists_origin_not_allowed_on_consumer_operations(client):
    paths = client.get("/openapi.json").json["paths"]
    for path, method in (("/api/v1/auth/guest", "post"), ("/api/v1/auth/otp/verify", "post"),
                         ("/api/v1/queues/{queue_id}/enter", "post"), ("/api/v1/queues/{queue_id}", "get")):
        examples = paths[path][method]["responses"]["403"]["content"]["application/json"]["examples"]
        assert "origin_not_allowed" in examples, path
    assert "identification_required" in paths["/api/v1/queues/{queue_id}/enter"]["post"]["responses"]["403"][
        "content"]["application/json"]["examples"]
    settings = paths["/api/v1/settings"]["patch"]["responses"]["403"]["content"]["application/json"]["examples"]
    assert "origin_not_allowed" not in settings  # secret-key endpoints are not for browsers
