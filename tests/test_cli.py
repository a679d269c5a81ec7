"""The command line people and scripts rely on (README: "Quick tour", "Running it in production"),
run as real processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from app import create_app
from tests.helpers import publishable, secret

KEY = r"[A-Za-z0-9]{32}"
CLI_SECRET = "cli-test-secret-" + "c" * 32


def flask(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "APP_SECRET": CLI_SECRET}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_db_upgrade_is_idempotent_and_org_create_prints_exactly_the_documented_json(tmp_path, app_config):
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    assert flask(url, "db", "upgrade").returncode == 0
    assert flask(url, "db", "upgrade").returncode == 0

    result = flask(url, "org", "create", "--name", "Acme", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # exactly one JSON object on stdout
    assert list(document) == ["organizationId", "keys"]
    assert re.fullmatch(r"org_[0-9A-Z]{26}", document["organizationId"])
    assert list(document["keys"]) == ["test", "live"]
    for mode in ("test", "live"):
        keys = document["keys"][mode]
        assert list(keys) == ["publishableKey", "secretKey"]
        assert re.fullmatch(rf"pk_{mode}_{KEY}", keys["publishableKey"])
        assert re.fullmatch(rf"sk_{mode}_{KEY}", keys["secretKey"])
    assert document["keys"]["test"]["secretKey"] not in result.stderr


def test_keys_from_the_cli_create_and_read_an_experience_as_in_the_seed(tmp_path):
    url = f"sqlite:///{tmp_path / 'seed.sqlite3'}"
    flask(url, "db", "upgrade")
    keys = json.loads(flask(url, "org", "create", "--name", "Acme", "--json").stdout)["keys"]["live"]

    from app import create_app

    client = create_app({"TESTING": True, "DATABASE_URL": url, "APP_SECRET": CLI_SECRET}).test_client()
    created = client.post("/api/v1/experiences", headers=secret(keys["secretKey"]),
                          json={"name": "Holiday Sale Queue", "openAt": "2024-12-01T09:00:00Z"})
    assert created.status_code == 201
    assert created.json["name"] == "Holiday Sale Queue"
    assert created.json["openAt"] == "2024-12-01T09:00:00Z"
    assert re.fullmatch(r"exp_[0-9A-Z]{26}", created.json["id"])

    read = client.get(f"/api/v1/experiences/{created.json['id']}", headers=publishable(keys["publishableKey"]))
    assert read.status_code == 200
    assert read.json == created.json


def test_ensure_dev_prints_test_keys_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'dev.sqlite3'}"
    flask(url, "db", "upgrade")
    first = flask(url, "org", "ensure-dev")
    assert first.returncode == 0
    assert re.search(rf"pk_test_{KEY}", first.stdout) and re.search(rf"sk_test_{KEY}", first.stdout)
    second = flask(url, "org", "ensure-dev")
    assert second.returncode == 0
    assert "sk_" not in second.stdout + second.stderr
    assert "New test keys: make keys" in second.stderr


def test_make_keys_issues_new_test_keys_for_the_development_organization(tmp_path):
    """A newcomer who missed the first `make run`'s keys: `make keys` (`ensure-dev --new-keys`)
    prints a working new pair for the same organization; the old keys keep working."""
    url = f"sqlite:///{tmp_path / 'dev.sqlite3'}"
    flask(url, "db", "upgrade")
    first = flask(url, "org", "ensure-dev").stdout
    again = flask(url, "org", "ensure-dev", "--new-keys")
    assert again.returncode == 0, again.stderr
    org = re.search(r"development organization (org_\w+)", first).group(1)
    assert f"development organization {org} " in again.stdout
    new_secret = re.search(rf"Bearer (sk_test_{KEY})", again.stdout).group(1)
    new_publishable = re.search(rf"X-Publishable-Key: (pk_test_{KEY})", again.stdout).group(1)
    assert new_secret not in first and new_publishable not in first
    app = create_app({"DATABASE_URL": url, "APP_SECRET": CLI_SECRET, "TESTING": True})
    try:
        client = app.test_client()
        assert client.get("/api/v1/keys", headers=secret(new_secret)).status_code == 200
        assert client.post("/api/v1/auth/guest", headers=publishable(new_publishable)).status_code == 201
        old_secret = re.search(rf"Bearer (sk_test_{KEY})", first).group(1)
        assert client.get("/api/v1/keys", headers=secret(old_secret)).status_code == 200
    finally:
        app.extensions["usher"].db.dispose()
