"""Signing keys: staged rotation, withdrawal and listing through the documented CLI.

Each test runs on a database of its own (`isolated_database_url`): withdrawing a key, or making
a new one current, must not change what the suite's shared app relies on, in any test order.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import jwt
import pytest

from app import create_app
from app.services.orgs import create_organization
from tests.conftest import APP_SECRET
from tests.helpers import TenantActions, consumer, publishable
from tests.live import ROOT


def cli(database_url: str, *args: str, lead: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "APP_SECRET": APP_SECRET,
           "SIGNING_KEY_LEAD_SECONDS": str(lead)}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "signing-key", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60, check=check)


@pytest.fixture
def isolated(app_config, isolated_database_url):
    """An app (keyring cache 1 s, rotation lead 4 s) and a tenant, on a database of their own."""
    app = create_app({**app_config, "DATABASE_URL": isolated_database_url, "KEYRING_CACHE_SECONDS": 1,
                      "SIGNING_KEY_LEAD_SECONDS": 4})
    with app.extensions["usher"].db.transaction() as session:
        org = create_organization(session, APP_SECRET, "Rotating")
    yield app, TenantActions(app.test_client(), org["keys"]["test"], org["organizationId"])
    app.extensions["usher"].db.dispose()


class CachingVerifier:
    """A merchant's resource server: caches the JWKS exactly as long as `Cache-Control` allows,
    and verifies with `iss`, `aud` and EdDSA only (never re-fetching on an unknown kid, the
    strictest case)."""

    def __init__(self, client, audience: str):
        self.client, self.audience = client, audience
        self.keys: dict[str, jwt.PyJWK] = {}
        self.expires = float("-inf")
        self.max_ages: set[int] = set()

    def verify(self, token: str) -> dict:
        if time.monotonic() >= self.expires:
            response = self.client.get("/.well-known/jwks.json")
            max_age = int(re.search(r"max-age=(\d+)", response.headers["Cache-Control"]).group(1))
            self.max_ages.add(max_age)
            self.keys = {jwk["kid"]: jwt.PyJWK(jwk) for jwk in response.json["keys"]}
            self.expires = time.monotonic() + max_age
        kid = jwt.get_unverified_header(token)["kid"]
        assert kid in self.keys, f"unknown kid {kid}: the JWKS this verifier may still use lacks it"
        return jwt.decode(token, self.keys[kid].key, algorithms=["EdDSA"], issuer="http://usher.test",
                          audience=self.audience)


def test_staged_rotation_publishes_the_new_key_before_it_signs(isolated, isolated_database_url):
    _app, tenant = isolated
    verifier = CachingVerifier(tenant.client, f"{tenant.org_id}/test")
    before = tenant.guest()
    old_kid = jwt.get_unverified_header(before["accessToken"])["kid"]
    verifier.verify(before["accessToken"])

    rotated = json.loads(cli(isolated_database_url, "rotate", lead=4).stdout)
    new_kid = rotated["access"]["kid"]
    assert new_kid.startswith("sig_") and new_kid != old_kid
    states = {key["kid"]: key for key in json.loads(cli(isolated_database_url, "list", "--json").stdout)}
    assert states[new_kid]["state"] == "next" and states[old_kid]["state"] == "current"
    assert states[rotated["refresh"]["kid"]] == {**states[rotated["refresh"]["kid"]], "purpose": "refresh",
                                                "state": "current"}

    # Poll (bounded) until the new key signs; every token on the way verifies at the caching verifier.
    seen_before_switch, deadline = False, time.monotonic() + 30
    while True:
        guest = tenant.guest()
        kid = jwt.get_unverified_header(guest["accessToken"])["kid"]
        assert verifier.verify(guest["accessToken"])["sub"] == guest["session"]["consumerId"]
        if kid == new_kid:
            break
        assert kid == old_kid
        published = {k["kid"] for k in tenant.client.get("/.well-known/jwks.json").json["keys"]}
        seen_before_switch |= new_kid in published
        assert time.monotonic() < deadline, "the new key never became current"
        time.sleep(0.2)
    assert seen_before_switch  # the JWKS showed the new key while the old one still signed
    assert verifier.max_ages == {1}  # (lead 4 s - keyring cache 1 s) // 2: always shorter than the lead

    # Tokens of the previous key stay valid until they expire, here and at the verifier.
    verifier.verify(before["accessToken"])
    queue = tenant.queue()
    assert tenant.client.post(f"/api/v1/queues/{queue['id']}/enter",
                              headers=consumer(tenant.pk, before["accessToken"])).status_code == 200
    refreshed = tenant.refresh(before["refreshToken"])
    assert refreshed.status_code == 200
    assert jwt.get_unverified_header(refreshed.json["accessToken"])["kid"] == new_kid
    assert jwt.get_unverified_header(refreshed.json["refreshToken"])["kid"] == rotated["refresh"]["kid"]
    states = {key["kid"]: key["state"] for key in json.loads(cli(isolated_database_url, "list", "--json").stdout)}
    assert states[new_kid] == "current" and states[old_kid] == "previous"


def test_rotate_now_signs_at_once_and_retire_kills_the_old_tokens_everywhere(isolated, isolated_database_url):
    _app, tenant = isolated
    queue = tenant.queue()
    before = tenant.guest()
    old_access = jwt.get_unverified_header(before["accessToken"])["kid"]
    old_refresh = jwt.get_unverified_header(before["refreshToken"])["kid"]
    assert old_access != old_refresh

    refused = cli(isolated_database_url, "retire", old_access, check=False)
    assert refused.returncode != 0 and "rotate --now" in refused.stderr  # the signing key cannot go
    rotated = json.loads(cli(isolated_database_url, "rotate", "--now").stdout)
    after = tenant.guest()
    assert jwt.get_unverified_header(after["accessToken"])["kid"] == rotated["access"]["kid"]
    assert jwt.get_unverified_header(after["refreshToken"])["kid"] == rotated["refresh"]["kid"]

    for kid in (old_access, old_refresh):
        retired = json.loads(cli(isolated_database_url, "retire", kid).stdout)
        assert retired["kid"] == kid and retired["state"] == "retired"
    unknown = cli(isolated_database_url, "retire", "sig_01HXYZ123456789ABCDEFGHJK", check=False)
    assert unknown.returncode != 0 and "no signing key" in unknown.stderr
    states = {key["kid"]: key["state"] for key in json.loads(cli(isolated_database_url, "list", "--json").stdout)}
    assert states[old_access] == states[old_refresh] == "retired"
    text = cli(isolated_database_url, "list").stdout
    assert old_access in text and "retired" in text

    time.sleep(1.1)  # the app's keyring cache (1 s here, 5 s by default) is the only delay
    client = tenant.client
    assert old_access not in {k["kid"] for k in client.get("/.well-known/jwks.json").json["keys"]}
    status = client.get(f"/api/v1/queues/{queue['id']}/status", headers=consumer(tenant.pk, before["accessToken"]))
    assert status.status_code == 401
    assert client.post("/api/v1/auth/logout",
                       headers={"Authorization": f"Bearer {before['accessToken']}"}).status_code == 401
    assert tenant.refresh(before["refreshToken"]).json["error"] == "refresh_token_invalid"
    token = client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": before["refreshToken"],
                                              "client_id": tenant.pk})
    assert token.status_code == 400 and token.json["error"] == "invalid_grant"
    for dead in (before["accessToken"], before["refreshToken"]):
        introspected = client.post("/oauth/introspect", data={"token": dead},
                                   headers={"Authorization": f"Bearer {tenant.sk}"})
        assert introspected.json == {"active": False}
    # The new pair is untouched.
    assert client.post(f"/api/v1/queues/{queue['id']}/enter",
                       headers=consumer(tenant.pk, after["accessToken"])).status_code == 200
    assert tenant.refresh(after["refreshToken"]).status_code == 200
    assert client.post("/api/v1/auth/guest", headers=publishable(tenant.pk)).status_code == 201
