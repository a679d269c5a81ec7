"""The explicit grant contract, typed settings and the one clock (issue: code health)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from app.config import ConfigError, Settings, instance_secret
from app.grants.base import BaseGrant
from tests.helpers import consumer, publishable

ROOT = Path(__file__).resolve().parent.parent


def test_disabled_grants_have_no_route_and_no_documentation(app_config):
    app = create_app({**app_config, "ENABLED_GRANTS": "guest,refresh_token"})
    client = app.test_client()
    paths = client.get("/openapi.json").json["paths"]
    assert "/api/v1/auth/guest" in paths and "/api/v1/auth/refresh" in paths
    assert "/api/v1/auth/otp/verify" not in paths and "/api/v1/auth/external/exchange" not in paths
    # Requesting a code is not a grant: it stays, but signing in with the code does not exist.
    assert "/api/v1/auth/otp/request" in paths
    for path in ("/api/v1/auth/otp/verify", "/api/v1/auth/external/exchange"):
        response = client.post(path, json={"email": "a@example.com", "code": "123456"},
                               headers=publishable("pk_test_" + "a" * 32))
        assert response.status_code == 404
        assert response.json["error"] == "not_found"


def test_an_unknown_grant_name_stops_the_app_with_a_clear_message(app_config):
    with pytest.raises(ConfigError, match="ENABLED_GRANTS names unknown grant types \\['pasword'\\]"):
        create_app({**app_config, "ENABLED_GRANTS": "guest,pasword"})


def test_a_grant_without_a_name_fails_when_it_is_declared():
    with pytest.raises(TypeError, match="must set GRANT_TYPE"):
        type("Nameless", (BaseGrant,), {})


@pytest.mark.parametrize("secret", ["", "x", "y" * 31])
def test_a_short_app_secret_is_refused_at_start(secret, tmp_path):
    env = {**os.environ, "APP_SECRET": secret, "USHER_INSTANCE_DIR": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    if secret == "":  # unset: a generated secret is used instead
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode != 0
    assert "APP_SECRET must be at least 32 characters" in result.stderr
    assert "Traceback" not in result.stderr.splitlines()[-1]


def test_bad_settings_name_their_variable():
    environ = {"APP_SECRET": "z" * 40, "DATABASE_URL": "sqlite://"}
    with pytest.raises(ConfigError, match="TRUSTED_PROXY_COUNT has an invalid value 'two'"):
        Settings.load(environ={**environ, "TRUSTED_PROXY_COUNT": "two"})
    with pytest.raises(ConfigError, match="GUEST_RATE_LIMIT"):
        Settings.load(environ={**environ, "GUEST_RATE_LIMIT": "lots"})
    with pytest.raises(ConfigError, match="SMS_WEBHOOK_URL"):
        Settings.load(environ={**environ, "OTP_SMS_SENDER": "webhook"})
    assert Settings.load(environ={**environ, "SMTP_STARTTLS": "yes"}).smtp_starttls is True


@pytest.mark.parametrize(("bind", "issuer"), [
    (None, "http://127.0.0.1:8000"), ("127.0.0.1:18200", "http://127.0.0.1:18200"),
    ("0.0.0.0:9000", "http://127.0.0.1:9000"), ("[::]:9001", "http://127.0.0.1:9001"),
    ("localhost:8080", "http://localhost:8080"), ("unix:/run/usher.sock", "http://127.0.0.1:8000")])
def test_issuer_follows_bind_unless_set(bind, issuer):
    """Tokens' `iss` and the RFC 8414 document name the port gunicorn listens on (BIND), so strict
    clients accept them; an ISSUER that is set always wins."""
    environ = {"APP_SECRET": "z" * 40, "DATABASE_URL": "sqlite://", **({"BIND": bind} if bind else {})}
    assert Settings.load(environ=environ).issuer == issuer
    assert Settings.load(environ={**environ, "ISSUER": "https://auth.example.com"}).issuer == "https://auth.example.com"


def test_the_generated_secret_is_private_and_the_same_for_processes_starting_together(tmp_path):
    """Eight processes generate the secret at once: all read one complete secret, mode 0600,
    in a 0700 directory."""
    code = ("import sys; from pathlib import Path; from app.config import instance_secret; "
            "print(instance_secret(Path(sys.argv[1])))")
    for trial in range(5):
        folder = tmp_path / f"instance{trial}"
        procs = [subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=ROOT, stdout=subprocess.PIPE,
                                  text=True) for _ in range(8)]
        secrets = {proc.communicate(timeout=60)[0].strip() for proc in procs}
        assert len(secrets) == 1 and len(secrets.pop()) >= 32
        assert stat.S_IMODE((folder / "app_secret").stat().st_mode) == 0o600
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert [p.name for p in folder.iterdir()] == ["app_secret"]  # no temporary file left behind
    assert instance_secret(tmp_path / "instance0") == (tmp_path / "instance0" / "app_secret").read_text().strip()


def test_the_sqlite_database_and_its_companions_are_private(tmp_path):
    path = tmp_path / "data" / "usher.sqlite3"
    path.parent.mkdir()
    app = create_app({"DATABASE_URL": f"sqlite:///{path}", "APP_SECRET": "s" * 40})
    from app.cli import upgrade_database

    upgrade_database(f"sqlite:///{path}")
    app.test_client().get("/.well-known/jwks.json")  # makes the signing key: a write, so -wal and -shm exist
    files = [p for p in path.parent.iterdir() if p.name.startswith("usher.sqlite3")]
    assert {p.name for p in files} >= {"usher.sqlite3", "usher.sqlite3-wal", "usher.sqlite3-shm"}
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
    app.extensions["usher"].db.dispose()


def test_the_clock_moves_every_check(app, tenant):
    """One clock: moving it expires access tokens (every endpoint refuses them) without sleeping."""
    clock = app.extensions["usher"].clock
    guest = tenant.guest()
    queue = tenant.queue()
    assert tenant.client.post(f"/api/v1/queues/{queue['id']}/enter",
                              headers=consumer(tenant.pk, guest["accessToken"])).status_code == 200
    assert tenant.status(queue["id"], guest["accessToken"]).status_code == 200
    ttl = app.extensions["usher"].settings.token_leeway_seconds + 3600
    clock.advance(ttl + 1)
    try:
        assert tenant.status(queue["id"], guest["accessToken"]).status_code == 401
        refreshed = tenant.refresh(guest["refreshToken"])
        assert refreshed.status_code == 200  # the 30-day refresh token is still good
        assert tenant.status(queue["id"], refreshed.json["accessToken"]).status_code == 200
    finally:
        clock.advance(-(ttl + 1))


def test_the_import_contracts_hold():
    """setup.cfg's import-linter contracts (`make lint`): no Flask below the API layer, no
    SQLAlchemy in views, grants or the dashboard, and the layers."""
    # In a process of its own: import-linter configures logging, which would leave this
    # process's loggers (and the tests that read them) changed.
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr  # its report names each broken import
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def test_the_app_scope_follows_the_app_context_of_its_app(app_config):
    """What the code below the API layer reads instead of `current_app` (app.scope): the app of
    the innermost app context, also when another app's context is nested inside, and nothing
    outside one."""
    from app import scope
    from app.errors import ApiError

    first, second = create_app(app_config), create_app(app_config)
    try:
        assert scope.current() is None
        with pytest.raises(KeyError):
            ApiError("not_a_catalogued_code")
        with first.app_context():
            assert scope.current().registry is first.extensions["usher_registry"]
            with second.app_context(), second.test_request_context():
                assert scope.registry() is second.extensions["usher_registry"]
            with first.app_context():  # the same app again: its own scope again
                assert scope.registry() is first.extensions["usher_registry"]
            assert scope.current().registry is first.extensions["usher_registry"]
        assert scope.current() is None
        with pytest.raises(RuntimeError, match="app context"):
            scope.registry()
    finally:
        for built in (first, second):
            built.extensions["usher"].db.dispose()


def test_the_app_scope_ends_with_its_context_even_when_a_teardown_fails(app_config):
    """A teardown that raises must not leave the app's scope behind (app.scope reads Flask's own
    context, so outside one there is no scope whatever happened at the last pop)."""
    from app import scope

    app = create_app(app_config)

    @app.teardown_appcontext
    def failing_teardown(_exc):
        raise RuntimeError("teardown failed")

    try:
        context = app.app_context()
        context.push()
        assert scope.current() is not None
        with pytest.raises(RuntimeError, match="teardown failed"):
            context.pop()
        assert scope.current() is None
    finally:
        app.extensions["usher"].db.dispose()
