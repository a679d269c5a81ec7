"""APP_SECRET across hosts (operations contract, "Secrets in production"): a host without it, or
with another one, refuses to start naming the variable; a rotation keeps every credential kind
working through APP_SECRET_FALLBACKS, `secrets rotate` re-seals, `secrets status` counts down,
and the fallback can then be dropped."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, select, text

from app import create_app
from app.config import ConfigError
from app.models import ApiKey, AuthSession, WebhookEndpoint
from app.security.crypto import short_fingerprint
from app.services.orgs import create_organization
from app.services.webhooks import signing_secrets
from tests.artifacts import record
from tests.helpers import publishable, secret
from tests.live import ROOT, LiveServer, http

OLD = "old-app-secret-" + "o" * 40
NEW = "new-app-secret-" + "n" * 40
OTHER = "other-app-secret-" + "q" * 40
SEED_AUTHORIZE = {"provider": "your-platform", "issuer": "https://your-domain.com", "subject": "user_123456"}


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    """A real `flask --app wsgi` process with exactly these Usher variables (no APP_SECRET unless given)."""
    base = {k: v for k, v in os.environ.items() if k not in ("APP_SECRET", "APP_SECRET_FALLBACKS", "DATABASE_URL")}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=60, check=False)


def app_on(url: str, secret_value: str, fallbacks: str = ""):
    return create_app({"TESTING": True, "DATABASE_URL": url, "APP_SECRET": secret_value,
                       "APP_SECRET_FALLBACKS": fallbacks, "RATELIMIT_STORAGE_URI": "memory://",
                       "WEBHOOK_PRIVATE_TARGETS": "allow"})  # a loopback receiver on PostgreSQL too


def test_a_shared_database_without_app_secret_refuses_to_start_naming_it(tmp_path):
    """The refusal happens before anything is read: no database needs to answer."""
    result = cli({"DATABASE_URL": "postgresql+psycopg://127.0.0.1:1/nothing", "USHER_INSTANCE_DIR": str(tmp_path)},
                 "secrets", "status", "--json")
    assert result.returncode != 0
    assert "APP_SECRET is not set: it is required when DATABASE_URL is not a SQLite file" in result.stderr
    assert not (tmp_path / "app_secret").exists()  # no secret was generated for it
    assert result.stdout == ""


def test_fallback_entries_must_be_long_enough():
    with pytest.raises(ConfigError, match="APP_SECRET_FALLBACKS entry must be at least 32"):
        app_on("sqlite://", NEW, "short")


@pytest.mark.gunicorn
def test_a_second_host_with_no_or_another_app_secret_refuses_to_start(isolated_database_url, tmp_path):
    """Host A (gunicorn) records its secret's fingerprint on its first start; host B with another
    secret, and host C with none, refuse to start naming the variable; host D, rotating to a new
    secret with A's as its fallback, starts."""
    url = isolated_database_url
    host_a = LiveServer({"DATABASE_URL": url, "APP_SECRET": OLD, "WEB_CONCURRENCY": "1"}, tmp_path / "a.log")
    host_a.start()
    try:
        assert http("GET", host_a.url + "/readyz").status == 200
        engine = create_engine(url)
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT fingerprint FROM app_secret_fingerprints")).scalars().all()
        engine.dispose()
        assert len(stored) == 1 and stored[0].startswith(short_fingerprint(OLD)) and OLD not in stored[0]

        host_b = LiveServer({"DATABASE_URL": url, "APP_SECRET": OTHER, "WEB_CONCURRENCY": "1"}, tmp_path / "b.log")
        with pytest.raises(RuntimeError, match="gunicorn exited"):
            host_b.start()
        assert "APP_SECRET does not match the secret this database belongs to" in host_b.log()
        assert f"its fingerprint {short_fingerprint(OLD)}" in host_b.log()
        assert OTHER not in host_b.log() and OLD not in host_b.log()

        no_secret = cli({"DATABASE_URL": url, "USHER_INSTANCE_DIR": str(tmp_path / "c")}, "secrets", "status")
        assert no_secret.returncode != 0
        # PostgreSQL: refused for the missing variable; a SQLite file: a generated secret, refused for the mismatch
        assert re.search(r"APP_SECRET is not set|APP_SECRET does not match", no_secret.stderr), no_secret.stderr

        host_d = cli({"DATABASE_URL": url, "APP_SECRET": NEW, "APP_SECRET_FALLBACKS": OLD},
                     "secrets", "status", "--json")
        assert host_d.returncode == 0, host_d.stderr
        assert json.loads(host_d.stdout)["fallbacks"][0]["fingerprint"] == short_fingerprint(OLD)
        assert http("GET", host_a.url + "/readyz").status == 200  # the refusals changed nothing for A
    finally:
        host_a.stop()


def test_readyz_is_503_when_the_signing_keys_cannot_be_opened(isolated_database_url):
    """A database that lost its fingerprint row (restored without it) lets another secret start:
    readiness must then say the keys do not open, instead of 200 and 500s."""
    first = app_on(isolated_database_url, OLD)
    assert first.test_client().get("/readyz").status_code == 200  # makes the signing keys
    with first.extensions["usher"].db.engine.begin() as connection:
        connection.execute(text("DELETE FROM app_secret_fingerprints"))
    first.extensions["usher"].db.dispose()
    stranger = app_on(isolated_database_url, OTHER)
    response = stranger.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "database": "ok", "signingKeys": "unavailable",
                             "limits": "ok"}
    stranger.extensions["usher"].db.dispose()


def _status(url: str, secret_value: str, fallbacks: str) -> dict:
    result = cli({"DATABASE_URL": url, "APP_SECRET": secret_value, "APP_SECRET_FALLBACKS": fallbacks},
                 "secrets", "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_rotation_end_to_end_every_credential_kind_then_the_fallback_is_dropped(isolated_database_url):
    url = isolated_database_url
    # Everything made under the old secret.
    old_app = app_on(url, OLD)
    client = old_app.test_client()
    with old_app.extensions["usher"].db.transaction() as session:
        both = create_organization(session, OLD, "Rotating")["keys"]
    keys, live_sk = both["test"], both["live"]["secretKey"]  # the live key stays unused until the end
    pk, sk = keys["publishableKey"], keys["secretKey"]
    made = client.post("/api/v1/keys", json={"type": "restricted", "scopes": ["experiences:read"]},
                       headers=secret(sk))
    assert made.status_code == 201, made.json
    rk = made.json["key"]
    guest = client.post("/api/v1/auth/guest", headers=publishable(pk)).json
    idle = client.post("/api/v1/auth/guest", headers=publishable(pk)).json  # never refreshed: counted until it is
    assert client.post("/api/v1/auth/otp/request", json={"email": "a@example.com"},
                       headers=publishable(pk)).status_code == 202
    exchange_code = client.post("/api/v1/auth/external/authorize", json=SEED_AUTHORIZE,
                                headers=secret(sk)).json["exchangeCode"]
    endpoint = client.post("/api/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/hooks",
                                                              "events": ["session.created"]}, headers=secret(sk)).json
    old_app.extensions["usher"].db.dispose()

    # New secret, old one as its fallback: every kind still works.
    rotating = app_on(url, NEW, OLD)
    client = rotating.test_client()
    before = _status(url, NEW, OLD)
    assert before["fallbacks"][0]["fingerprint"] == short_fingerprint(OLD) and before["fallbacks"][0]["rows"] >= 8
    assert client.get("/api/v1/experiences", headers=secret(sk)).status_code == 200
    assert client.get("/api/v1/experiences", headers=secret(rk)).status_code == 200
    refreshed = client.post("/api/v1/auth/refresh", json={"refreshToken": guest["refreshToken"]},
                            headers=publishable(pk))
    assert refreshed.status_code == 200, refreshed.json
    outbox = client.get("/api/v1/test/otp-messages", headers=secret(sk))
    assert outbox.status_code == 200  # captured messages unseal
    code = re.search(r"\b(\d{6,10})\b", outbox.json["data"][0]["body"]).group(1)
    assert client.post("/api/v1/auth/otp/verify", json={"email": "a@example.com", "code": code},
                       headers=publishable(pk)).status_code == 200
    assert client.post("/api/v1/auth/external/exchange", json={"exchangeCode": exchange_code},
                       headers=publishable(pk)).status_code == 200
    assert client.get("/.well-known/jwks.json").status_code == 200
    assert client.post("/api/v1/auth/guest", headers=publishable(pk)).status_code == 201  # signs with an old key
    with rotating.extensions["usher"].db.sessionmaker() as session:
        row = session.get(WebhookEndpoint, endpoint["id"])
        assert signing_secrets(row, NEW, datetime.now(UTC), (OLD,)) == [endpoint["secret"]]
        lookups = dict(session.execute(select(ApiKey.type, ApiKey.lookup_fingerprint)
                                       .where(ApiKey.lookup_fingerprint.is_not(None),
                                              ApiKey.last4.in_([sk[-4:], rk[-4:]]))).all())
        assert lookups == {"secret": short_fingerprint(NEW), "restricted": short_fingerprint(NEW)}  # re-hashed on use
        assert session.get(AuthSession, idle["session"]["sessionId"]).refresh_fingerprint == short_fingerprint(OLD)
    after_use = _status(url, NEW, OLD)["fallbacks"][0]["rows"]
    assert after_use < before["fallbacks"][0]["rows"]

    rotated = cli({"DATABASE_URL": url, "APP_SECRET": NEW, "APP_SECRET_FALLBACKS": OLD}, "secrets", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout) == {"resealed": json.loads(rotated.stdout)["resealed"],
                                          "fingerprint": short_fingerprint(NEW)}
    assert json.loads(rotated.stdout)["resealed"] >= 3  # signing keys, the webhook secret, the captured message
    # left: the idle session and the unused live secret key (hash-only: they move on use)
    assert _status(url, NEW, OLD) == {"fallbacks": [{"fingerprint": short_fingerprint(OLD), "rows": 2}]}
    assert client.post("/api/v1/auth/refresh", json={"refreshToken": idle["refreshToken"]},
                       headers=publishable(pk)).status_code == 200
    assert _status(url, NEW, OLD) == {"fallbacks": [{"fingerprint": short_fingerprint(OLD), "rows": 1}]}
    assert client.get("/api/v1/experiences", headers=secret(live_sk)).status_code == 200
    assert _status(url, NEW, OLD) == {"fallbacks": [{"fingerprint": short_fingerprint(OLD), "rows": 0}]}
    rotating.extensions["usher"].db.dispose()

    # The fallback dropped: still works; the old secret alone no longer starts.
    final = app_on(url, NEW)
    client = final.test_client()
    assert client.get("/api/v1/experiences", headers=secret(sk)).status_code == 200
    assert client.get("/api/v1/experiences", headers=secret(rk)).status_code == 200
    assert client.post("/api/v1/auth/refresh", json={"refreshToken": refreshed.json["refreshToken"]},
                       headers=publishable(pk)).status_code == 200
    assert client.get("/api/v1/test/otp-messages", headers=secret(sk)).status_code == 200
    assert client.get("/readyz").status_code == 200
    with final.extensions["usher"].db.sessionmaker() as session:
        assert signing_secrets(session.get(WebhookEndpoint, endpoint["id"]), NEW,
                               datetime.now(UTC)) == [endpoint["secret"]]
    final.extensions["usher"].db.dispose()
    assert _status(url, NEW, "") == {"fallbacks": []}
    with pytest.raises(ConfigError, match="APP_SECRET does not match"):
        app_on(url, OLD)


class Load:
    """Client threads cycling through the hosts currently in `targets`: a secret-key read, a guest
    sign-in and a refresh of each thread's own session (its token moving host to host)."""

    def __init__(self, keys: dict, refresh_tokens: list[str], targets: list[str]):
        self.keys, self.refresh_tokens = keys, refresh_tokens
        self.targets = targets
        self.done, self.failures = threading.Event(), []
        self.requests = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(len(refresh_tokens))]

    def _run(self, index: int) -> None:
        pk, sk = self.keys["publishableKey"], self.keys["secretKey"]
        turn = 0
        while not self.done.is_set():
            url = self.targets[turn % len(self.targets)]
            turn += 1
            for method, path, headers, body, expected in (
                    ("GET", "/api/v1/experiences", secret(sk), None, 200),
                    ("POST", "/api/v1/auth/guest", publishable(pk), None, 201),
                    ("POST", "/api/v1/auth/refresh", publishable(pk),
                     {"refreshToken": self.refresh_tokens[index]}, 200)):
                try:
                    reply = http(method, url + path, headers, body, timeout=30)
                    status = reply.status
                except OSError as exc:
                    status = repr(exc)
                with self.lock:
                    self.requests += 1
                    if status != expected:
                        self.failures.append((url, path, status))
                if path.endswith("refresh") and status == 200:
                    self.refresh_tokens[index] = reply.body["refreshToken"]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        for thread in self.threads:
            thread.join()


@pytest.mark.gunicorn
def test_a_secret_rotated_under_load_with_zero_failed_requests_then_the_fallback_dropped(isolated_database_url,
                                                                                          tmp_path):
    """The README's three steps, each switch made while four clients keep reading, signing in and
    refreshing across the hosts: host A (old secret) → host P (old, the new one as fallback: it
    can check what new hosts hash) → host B (new, old as fallback) → `secrets rotate` → host C
    (new only). A host with the old secret alone beside one writing with the new would refuse
    the keys and refresh tokens the new one re-hashed."""
    url = isolated_database_url
    seeder = app_on(url, OLD)
    with seeder.extensions["usher"].db.transaction() as session:
        keys = create_organization(session, OLD, "Under load")["keys"]["test"]
    client = seeder.test_client()
    tokens = [client.post("/api/v1/auth/guest", headers=publishable(keys["publishableKey"])).json["refreshToken"]
              for _ in range(4)]
    seeder.extensions["usher"].db.dispose()

    def host(name: str, **env: str) -> LiveServer:
        server = LiveServer({"DATABASE_URL": url, "WEB_CONCURRENCY": "2", "GUEST_RATE_LIMIT": "100000 per minute",
                             **env}, tmp_path / f"{name}.log")
        server.start(timeout=120)
        return server

    started = time.monotonic()
    host_a = host("a", APP_SECRET=OLD)
    host_p = host_b = host_c = None
    try:
        with Load(keys, tokens, [host_a.url]) as load:
            time.sleep(1)
            # 1. every host learns the new secret as a fallback (hashes and seals still old)
            host_p = host("p", APP_SECRET=OLD, APP_SECRET_FALLBACKS=NEW)
            load.targets[:] = [host_a.url, host_p.url]
            time.sleep(1)
            load.targets[:] = [host_p.url]
            time.sleep(0.5)  # requests already sent to A finish
            host_a.stop()
            # 2. every host writes with the new secret, the old one as fallback
            host_b = host("b", APP_SECRET=NEW, APP_SECRET_FALLBACKS=OLD)
            load.targets[:] = [host_p.url, host_b.url]
            time.sleep(1)
            load.targets[:] = [host_b.url]
            time.sleep(0.5)
            host_p.stop()
            rotated = cli({"DATABASE_URL": url, "APP_SECRET": NEW, "APP_SECRET_FALLBACKS": OLD}, "secrets", "rotate")
            assert rotated.returncode == 0, rotated.stderr
            # 3. the fallback dropped
            host_c = host("c", APP_SECRET=NEW)
            load.targets[:] = [host_b.url, host_c.url]
            time.sleep(1)
            load.targets[:] = [host_c.url]
            time.sleep(1.5)
        figures = {"requests": load.requests, "failed": len(load.failures),
                   "seconds": round(time.monotonic() - started, 1), "resealed": json.loads(rotated.stdout)["resealed"]}
        record("operations.json", "APP_SECRET rotated under load", figures)
        assert load.failures == [], load.failures[:10]
        assert load.requests > 30, figures
    finally:
        for server in (host_a, host_p, host_b, host_c):
            if server is not None:
                server.stop()
    assert _status(url, NEW, "") == {"fallbacks": []}
    with pytest.raises(ConfigError, match="APP_SECRET does not match"):
        app_on(url, OLD)
