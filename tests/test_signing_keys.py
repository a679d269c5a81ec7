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
from alembic import command

from app import create_app
from app.services.orgs import create_organization
from tests.conftest import APP_SECRET
from tests.helpers import TenantActions, consumer, publishable
from tests.live import ROOT


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess:
    """The documented command, in a process of its own (as an operator runs it)."""
    env = {**os.environ, "DATABASE_URL": database_url, "APP_SECRET": APP_SECRET, "SIGNING_KEY_LEAD_SECONDS": "600"}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "signing-key", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60, check=True)


@pytest.fixture
def isolated(app_config, isolated_database_url):
    """Make an app (with this keyring cache) and a tenant, on a database of their own."""
    apps = []

    def make(cache_seconds: float):
        app = create_app({**app_config, "DATABASE_URL": isolated_database_url, "KEYRING_CACHE_SECONDS": cache_seconds})
        apps.append(app)
        with app.extensions["usher"].db.transaction() as session:
            org = create_organization(session, APP_SECRET, "Rotating")
        return app, TenantActions(app.test_client(), org["keys"]["test"], org["organizationId"])

    yield make
    for app in apps:
        app.extensions["usher"].db.dispose()


class CachingVerifier:
    """A merchant's resource server: caches the JWKS exactly as long as `Cache-Control` allows
    (on the app's clock, which the test moves), and verifies with `iss`, `aud` and EdDSA only,
    never re-fetching on an unknown kid (the strictest case)."""

    def __init__(self, client, audience: str, clock):
        self.client, self.audience, self.clock = client, audience, clock
        self.keys: dict[str, jwt.PyJWK] = {}
        self.expires = float("-inf")
        self.max_ages: set[int] = set()

    def verify(self, token: str) -> dict:
        if self.clock.timestamp() >= self.expires:
            response = self.client.get("/.well-known/jwks.json")
            max_age = int(re.search(r"max-age=(\d+)", response.headers["Cache-Control"]).group(1))
            self.max_ages.add(max_age)
            self.keys = {jwk["kid"]: jwt.PyJWK(jwk) for jwk in response.json["keys"]}
            self.expires = self.clock.timestamp() + max_age
        kid = jwt.get_unverified_header(token)["kid"]
        assert kid in self.keys, f"unknown kid {kid}: the JWKS this verifier may still use lacks it"
        return jwt.decode(token, self.keys[kid].key, algorithms=["EdDSA"], issuer="http://usher.test",
                          audience=self.audience, options={"verify_exp": False, "verify_iat": False})


def test_staged_rotation_publishes_the_new_key_before_it_signs(isolated, isolated_database_url):
    """`rotate` (another process, the default lead of 600 s), then the app's clock moves in 50 s
    steps: the JWKS shows the new key at once, the key signs only after the lead, and a verifier
    that honours `max-age` never meets a kid it does not have."""
    app, tenant = isolated(0)
    clock = app.extensions["usher"].clock
    verifier = CachingVerifier(tenant.client, f"{tenant.org_id}/test", clock)
    before = tenant.guest()
    old_kid = jwt.get_unverified_header(before["accessToken"])["kid"]
    verifier.verify(before["accessToken"])  # cached for max-age from now on

    rotated = json.loads(cli(isolated_database_url, "rotate").stdout)
    new_kid = rotated["access"]["kid"]
    assert new_kid.startswith("sig_") and new_kid != old_kid
    states = {key["kid"]: key for key in json.loads(app.test_cli_runner().invoke(
        args=["signing-key", "list", "--json"]).stdout)}
    assert states[new_kid]["state"] == "next" and states[old_kid]["state"] == "current"
    assert states[rotated["refresh"]["kid"]]["purpose"] == "refresh"
    assert states[rotated["refresh"]["kid"]]["state"] == "current"  # never published: no lead needed

    timeline = []
    try:
        for _ in range(14):  # 14 x 50 s: past the 600 s lead
            guest = tenant.guest()
            kid = jwt.get_unverified_header(guest["accessToken"])["kid"]
            assert verifier.verify(guest["accessToken"])["sub"] == guest["session"]["consumerId"]
            published = {k["kid"] for k in tenant.client.get("/.well-known/jwks.json").json["keys"]}
            timeline.append((clock.offset.total_seconds(), kid, new_kid in published))
            clock.advance(50)
        assert all(in_jwks for _, _, in_jwks in timeline)  # published from the first moment
        signers = [(offset, kid) for offset, kid, _ in timeline]
        assert {kid for offset, kid in signers if offset < 550} == {old_kid}  # the lead, less clock skew
        assert {kid for offset, kid in signers if offset >= 650} == {new_kid}
        assert verifier.max_ages == {300}  # 5 minutes: well within the lead (600 s - cache - 60 s margin)

        # Tokens of the previous key stay valid until they expire, here and at the verifier.
        verifier.verify(before["accessToken"])
        queue = tenant.queue()
        assert tenant.client.post(f"/api/v1/queues/{queue['id']}/enter",
                                  headers=consumer(tenant.pk, before["accessToken"])).status_code == 200
        refreshed = tenant.refresh(before["refreshToken"])
        assert refreshed.status_code == 200
        assert jwt.get_unverified_header(refreshed.json["accessToken"])["kid"] == new_kid
        assert jwt.get_unverified_header(refreshed.json["refreshToken"])["kid"] == rotated["refresh"]["kid"]
        states = {key["kid"]: key["state"] for key in json.loads(app.test_cli_runner().invoke(
            args=["signing-key", "list", "--json"]).stdout)}
        assert states[new_kid] == "current" and states[old_kid] == "previous"
    finally:
        clock.advance(-clock.offset.total_seconds())


def test_rotate_now_signs_at_once_and_retire_kills_the_old_tokens_everywhere(isolated, isolated_database_url):
    app, tenant = isolated(1)
    runner = app.test_cli_runner()
    queue = tenant.queue()
    before = tenant.guest()
    old_access = jwt.get_unverified_header(before["accessToken"])["kid"]
    old_refresh = jwt.get_unverified_header(before["refreshToken"])["kid"]
    assert old_access != old_refresh

    refused = runner.invoke(args=["signing-key", "retire", old_access])
    assert refused.exit_code != 0 and "rotate --now" in refused.output  # the signing key cannot go
    rotated = json.loads(cli(isolated_database_url, "rotate", "--now").stdout)
    after = tenant.guest()
    assert jwt.get_unverified_header(after["accessToken"])["kid"] == rotated["access"]["kid"]
    assert jwt.get_unverified_header(after["refreshToken"])["kid"] == rotated["refresh"]["kid"]

    for kid in (old_access, old_refresh):
        retired = json.loads(cli(isolated_database_url, "retire", kid).stdout)
        assert retired["kid"] == kid and retired["state"] == "retired"
    unknown = runner.invoke(args=["signing-key", "retire", "sig_01HXYZ123456789ABCDEFGHJK"])
    assert unknown.exit_code != 0 and "no signing key" in unknown.output
    states = {key["kid"]: key["state"] for key in json.loads(cli(isolated_database_url, "list", "--json").stdout)}
    assert states[old_access] == states[old_refresh] == "retired"
    text = runner.invoke(args=["signing-key", "list"]).stdout
    assert old_access in text and "retired" in text

    # Another process retired them: this app sees it within its keyring cache (1 s here, 5 s by default).
    client, deadline = tenant.client, time.monotonic() + 5
    while old_access in {k["kid"] for k in client.get("/.well-known/jwks.json").json["keys"]}:
        assert time.monotonic() < deadline
        time.sleep(0.1)
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


def test_keys_made_before_the_split_keep_their_tokens_working(isolated_database, app_config):
    """A database at revision 0004 with a key and a session whose refresh token that key signed
    (as Usher signed both kinds then): after the upgrade the key is `legacy`, published, and the
    old refresh token still rotates; the new refresh token comes from an unpublished key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )
    from sqlalchemy import create_engine, text

    from app.cli import alembic_config
    from app.security.crypto import Sealer
    from app.services.sessions import refresh_hash

    url = isolated_database("0004")
    now = int(time.time())
    private, kid = Ed25519PrivateKey.generate(), "sig_01HXYZ123456789ABCDEFGHJK"
    sealed = Sealer(APP_SECRET, "usher signing keys v1").seal(
        private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()), kid)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO signing_keys (kid, public_key, private_key_encrypted, created_at) "
                          "VALUES (:kid, :public, :sealed, CURRENT_TIMESTAMP)"),
                     {"kid": kid, "public": private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
                      "sealed": sealed})
    command.upgrade(alembic_config(url), "head")
    app = create_app({**app_config, "DATABASE_URL": url})
    try:
        with app.extensions["usher"].db.transaction() as session:
            org = create_organization(session, APP_SECRET, "Legacy")
        tenant = TenantActions(app.test_client(), org["keys"]["test"], org["organizationId"])
        guest = tenant.guest()
        assert jwt.get_unverified_header(guest["accessToken"])["kid"] == kid  # still the signing access key
        refresh_kid = jwt.get_unverified_header(guest["refreshToken"])["kid"]
        assert refresh_kid != kid
        published = {k["kid"] for k in tenant.client.get("/.well-known/jwks.json").json["keys"]}
        assert kid in published and refresh_kid not in published
        # A refresh token the legacy key signed before the upgrade (same session, same jti scheme).
        claims = jwt.decode(guest["refreshToken"], options={"verify_signature": False})
        old = {**claims, "jti": "legacy-jti", "iat": now, "exp": now + 3600}
        with engine.begin() as conn:
            conn.execute(text("UPDATE sessions SET refresh_hash = :hash, generation_refresh_kid = NULL "
                              "WHERE id = :id"), {"hash": refresh_hash(APP_SECRET, "legacy-jti"),
                                                  "id": claims["sessionId"]})
        legacy_token = jwt.encode(old, private, algorithm="EdDSA", headers={"kid": kid, "typ": "JWT"})
        rotated = tenant.refresh(legacy_token)
        assert rotated.status_code == 200, rotated.json
        assert jwt.get_unverified_header(rotated.json["refreshToken"])["kid"] == refresh_kid
        states = {key["kid"]: key for key in json.loads(app.test_cli_runner().invoke(
            args=["signing-key", "list", "--json"]).stdout)}
        assert states[kid]["purpose"] == "legacy" and states[kid]["state"] == "current"
    finally:
        app.extensions["usher"].db.dispose()
        engine.dispose()
