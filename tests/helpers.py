"""The actions helper: the few HTTP calls most tests make, spelled once."""

from __future__ import annotations

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
            return create_organization(session, self.app.config["APP_SECRET"], name)

    def create_experience(self, secret_key: str, **body) -> dict:
        body.setdefault("name", "Holiday Sale")
        response = self.client.post("/api/v1/experiences", json=body, headers=secret(secret_key))
        assert response.status_code == 201, response.json
        return response.json
