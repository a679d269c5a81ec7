"""An Usher app with `magic_link` enabled, on a database upgraded by `flask db upgrade` (which
applies this package's Alembic branch): a SQLite file, or the database named by
USHER_MAGIC_LINK_DATABASE_URL (Usher's `make test` passes a PostgreSQL schema of its own)."""

from __future__ import annotations

import json

import pytest

from app import create_app

APP_SECRET = "magic-link-plugin-tests-" + "x" * 32
SHOP = "https://shop.example.com"


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    import os

    url = os.environ.get("USHER_MAGIC_LINK_DATABASE_URL") or \
        f"sqlite:///{tmp_path_factory.mktemp('db') / 'usher.sqlite3'}"
    app = create_app({"TESTING": True, "DATABASE_URL": url, "APP_SECRET": APP_SECRET,
                      "ENABLED_GRANTS": "guest,refresh_token,otp,external,magic_link"})
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    yield app
    app.extensions["usher"].db.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def tenant(app, client):
    """A new organization's test mode, with the shop's origin allowed: (publishable, secret)."""
    result = app.test_cli_runner().invoke(args=["org", "create", "--name", "Acme", "--json"])
    keys = json.loads(result.stdout)["keys"]["test"]
    pk, sk = keys["publishableKey"], keys["secretKey"]
    response = client.patch("/api/v1/settings", json={"allowedOrigins": [SHOP]},
                            headers={"Authorization": f"Bearer {sk}"})
    assert response.status_code == 200, response.json
    return pk, sk
