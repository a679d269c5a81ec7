"""Fixtures: one app per test session on a real database (a SQLite file, or PostgreSQL when
USHER_TEST_DATABASE_URL is set by `make test`), and a fresh organization per test, so tests
stay independent without rebuilding the schema."""

from __future__ import annotations

import itertools
import os

import pytest
from alembic import command
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from werkzeug.test import TestResponse

import tests.live
from app import create_app
from app.cli import alembic_config, upgrade_database
from tests.helpers import Actions, Dashboard, TenantActions
from tests.live import LiveServer

APP_SECRET = "test-app-secret-" + "x" * 32


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """A test that uses the shared gunicorn fixture starts gunicorn: mark it so (make test-fast
    leaves it out) without relying on each test to say it."""
    for item in items:
        if "live_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.gunicorn)


def pytest_runtest_setup(item):
    """Before any fixture of the test: its markers, which tests/live.py checks before starting a server."""
    tests.live.RUNNING_TEST_MARKERS = {marker.name for marker in item.iter_markers()}


def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    url = os.environ.get("USHER_TEST_DATABASE_URL")
    if url:
        _reset_postgres(url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'usher.sqlite3'}"
    upgrade_database(url)
    return url


@pytest.fixture
def isolated_database(database_url, tmp_path):
    """Make databases of this test's own, migrated up to a revision (a PostgreSQL schema in the
    PostgreSQL pass): for tests that change what every app on the shared database relies on
    (withdrawing signing keys), or that start from an older schema."""
    schemas: list[str] = []
    made = itertools.count()
    engine = create_engine(database_url) if database_url.startswith("postgresql") else None

    def make(revision: str = "head") -> str:
        name = f"iso_{os.getpid()}_{next(made)}_{tmp_path.name}".lower().replace("-", "_")[:60]
        if engine is None:
            url = f"sqlite:///{tmp_path / (name + '.sqlite3')}"
        else:
            with engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{name}"'))
            schemas.append(name)
            url = f"{database_url}{'&' if '?' in database_url else '?'}options=-csearch_path%3D{name}"
        command.upgrade(alembic_config(url), revision)
        return url

    yield make
    if engine is not None:
        with engine.begin() as conn:
            for name in schemas:
                conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        engine.dispose()


@pytest.fixture
def isolated_database_url(isolated_database) -> str:
    return isolated_database()


@pytest.fixture(scope="session")
def app_config(database_url) -> dict:
    return {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "APP_SECRET": APP_SECRET,
        "RATELIMIT_STORAGE_URI": "memory://",
        "ISSUER": "http://usher.test",
        "GUEST_RATE_LIMIT": "100000 per minute",  # the limit itself is tested on an app of its own
        # Test endpoints at loopback receivers in both passes (`auto` would refuse them on PostgreSQL).
        "WEBHOOK_PRIVATE_TARGETS": "allow",
    }


@pytest.fixture(scope="session")
def app(app_config):
    app = create_app(app_config)
    yield app
    app.extensions["usher"].db.dispose()


class CheckedResponse(TestResponse):
    """Every JSON error body must carry `requestId` equal to the `X-Request-Id` header; `.json`
    then shows the body without it, so tests compare the contract's bodies exactly."""

    @property
    def json(self):
        body = super().json
        if self.status_code >= 400 and isinstance(body, dict):
            assert body.get("requestId") == self.headers["X-Request-Id"], body
            body = {k: v for k, v in body.items() if k != "requestId"}
        return body


class CheckedClient(FlaskClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.response_wrapper = type("CheckedAppResponse", (CheckedResponse, self.application.response_class), {})


Flask.test_client_class = CheckedClient  # every app the tests build


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def actions(app, client) -> Actions:
    return Actions(app, client)


@pytest.fixture
def org(actions) -> dict:
    """A new organization: {"organizationId", "keys": {mode: {publishableKey, secretKey}}}."""
    return actions.create_org()


@pytest.fixture
def tenant(client, org) -> TenantActions:
    """Actions in the test mode of a new organization."""
    return TenantActions(client, org["keys"]["test"], org["organizationId"])


@pytest.fixture
def dash(app) -> Dashboard:
    """A browser-like client of the dashboard on the session's app (see `Dashboard`)."""
    return Dashboard(app.test_client())


@pytest.fixture(scope="session")
def live_server(database_url, tmp_path_factory):
    """A real gunicorn (4 sync workers) on a spare loopback port, on the test database."""
    env = {"DATABASE_URL": database_url, "APP_SECRET": APP_SECRET, "ISSUER": "http://usher.test",
           "WEB_CONCURRENCY": "4", "REFRESH_GRACE_SECONDS": "3", "GUEST_RATE_LIMIT": "100000 per minute",
           "WEBHOOK_PRIVATE_TARGETS": "allow"}
    redis_url = os.environ.get("USHER_TEST_REDIS_URL")
    if redis_url:
        env["RATELIMIT_STORAGE_URI"] = redis_url
    server = LiveServer(env, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def actions_factory(app):
    """Make organizations from fixtures wider than one test."""
    return lambda name="Acme": Actions(app, app.test_client()).create_org(name)
