"""The actions helper: the few HTTP calls most tests make, spelled once."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event

from app.services.orgs import create_organization


def secret(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def publishable(key: str) -> dict:
    return {"X-Publishable-Key": key}


class Actions:
    def __init__(self, app, client):
        self.app = app
        self.client = client

    def create_org(self, name: str = "Acme") -> dict:
        with self.app.extensions["usher"].db.transaction() as session:
            return create_organization(session, self.app.extensions["usher"].settings.app_secret, name)

    def create_experience(self, secret_key: str, **body) -> dict:
        body.setdefault("name", "Holiday Sale")
        response = self.client.post("/api/v1/experiences", json=body, headers=secret(secret_key))
        assert response.status_code == 201, response.json
        return response.json


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def consumer(publishable_key: str, access_token: str) -> dict:
    return {**publishable(publishable_key), **bearer(access_token)}


class TenantActions:
    """Actions of one organization and mode."""

    def __init__(self, client, keys: dict, org_id: str | None = None):
        self.client = client
        self.pk = keys["publishableKey"]
        self.sk = keys["secretKey"]
        self.org_id = org_id

    def guest(self) -> dict:
        response = self.client.post("/api/v1/auth/guest", headers=publishable(self.pk))
        assert response.status_code == 201, response.json
        return response.json

    def refresh(self, refresh_token: str):
        return self.client.post("/api/v1/auth/refresh", headers=publishable(self.pk),
                                json={"refreshToken": refresh_token})

    def queue(self, **body) -> dict:
        experience = self.client.post("/api/v1/experiences", json={"name": "Drop"}, headers=secret(self.sk)).json
        body = {"experienceId": experience["id"], "name": "Main", **body}
        response = self.client.post("/api/v1/queues", json=body, headers=secret(self.sk))
        assert response.status_code == 201, response.json
        return response.json

    def status(self, queue_id: str, access_token: str):
        return self.client.get(f"/api/v1/queues/{queue_id}/status", headers=consumer(self.pk, access_token))


def on_postgresql(app) -> None:
    if app.extensions["usher"].db.engine.dialect.name != "postgresql":
        pytest.skip("the two-round-trip writes are PostgreSQL's; SQLite always takes the locked path (make test runs "
                    "this file again on PostgreSQL)")


class Statements:
    """The statements the app's engine runs, and its write transactions, while in the block.
    With `before`, a race: `before(other)` runs once, in a transaction of its own on another
    connection, just before the first statement that starts with `at`."""

    def __init__(self, app, before=None, at: str = ""):
        self.engine = app.extensions["usher"].db.engine
        self.before, self.at, self.seen, self.begins = before, at, [], []

    def _execute(self, _conn, _cursor, statement, *_args):
        self.seen.append(statement)
        if self.before is not None and statement.startswith(self.at):
            change, self.before = self.before, None
            with self.engine.begin() as other:
                change(other)

    def _begin(self, conn):
        if conn.get_execution_options().get("usher_write"):
            self.begins.append(1)

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._execute)
        event.listen(self.engine, "begin", self._begin)
        return self

    def __exit__(self, *_exc):
        event.remove(self.engine, "before_cursor_execute", self._execute)
        event.remove(self.engine, "begin", self._begin)

    def touching(self, *tables: str) -> list[str]:
        return [s for s in self.seen if any(f" {table}" in s for table in tables)]


# -- the dashboard ----------------------------------------------------------------------------
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Dashboard:
    """A browser-like client of the dashboard: keeps the cookie, reads the CSRF token."""

    def __init__(self, client):
        self.client = client
        self.token = None

    def get(self, path: str):
        response = self.client.get(path)
        match = CSRF.search(response.text)
        if match:
            self.token = match.group(1)
        return response

    def post(self, path: str, data: dict | None = None, csrf: bool = True):
        if self.token is None:
            self.get("/dashboard/sign-in")
        return self.client.post(path, data={**(data or {}), **({"csrf_token": self.token} if csrf else {})})

    def sign_in(self, key: str):
        self.get("/dashboard/sign-in")
        response = self.post("/dashboard/sign-in", {"key": key})
        assert response.status_code == 303 and response.headers["Location"] == "/dashboard/keys", response.text
        self.get("/dashboard/keys")
        return response


def as_form(settings: dict) -> dict:
    """The settings as the page's form submits them: a list field is a textarea, one entry a line."""
    return {key: "\n".join(value) if isinstance(value, list) else value for key, value in settings.items()}
