"""Request ids, the access log, and the health endpoints."""

from __future__ import annotations

import json
import logging
import re

import pytest

from app import create_app
from tests.conftest import APP_SECRET
from tests.helpers import publishable, secret
from tests.live import LiveServer, free_port, http


def test_request_id_is_made_echoed_and_put_in_error_bodies(client):
    ok = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", ok.headers["X-Request-Id"])
    mine = client.get("/api/v1/keys", headers={"X-Request-Id": "lb-1234.abc"})
    assert mine.headers["X-Request-Id"] == "lb-1234.abc"
    assert json.loads(mine.get_data())["requestId"] == "lb-1234.abc"
    hostile = client.get("/healthz", headers={"X-Request-Id": "x\" injected=1 " + "y" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["X-Request-Id"])


def test_one_access_line_per_request_without_credentials(client, org, tenant, caplog):
    caplog.set_level(logging.INFO, logger="usher.access")
    keys = org["keys"]["test"]
    guest = tenant.guest()
    client.get(f"/api/v1/keys?leak={keys['secretKey']}", headers={**secret(keys["secretKey"]), "X-Request-Id": "r-1"})
    client.post("/api/v1/auth/refresh", json={"refreshToken": guest["refreshToken"]},
                headers=publishable(keys["publishableKey"]))
    lines = [r.getMessage() for r in caplog.records if r.name == "usher.access"]
    assert len(lines) == 3
    assert re.fullmatch(rf"GET /api/v1/keys 200 \d+\.\dms request_id=r-1 org={org['organizationId']}", lines[1])
    assert re.fullmatch(r"POST /api/v1/auth/refresh 200 \d+\.\dms request_id=[0-9a-f]{32} org=org_\w+", lines[2])
    text = caplog.text
    for value in (keys["secretKey"], keys["publishableKey"], guest["accessToken"], guest["refreshToken"]):
        assert value not in text


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json == {"status": "ok", "database": "ok", "signingKeys": "ok", "limits": "ok"}


def test_readyz_is_503_when_the_database_is_down_and_200_degraded_without_limit_storage(app_config):
    app = create_app({**app_config, "DATABASE_URL": f"postgresql+psycopg://127.0.0.1:{free_port()}/x"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable" and response.json["database"] == "unavailable"
    assert response.json["signingKeys"] == "unavailable"
    assert response.headers["Retry-After"]
    app.extensions["usher"].db.dispose()

    app = create_app({**app_config, "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{free_port()}/0"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "signingKeys": "ok", "limits": "degraded"}
    assert "Retry-After" not in response.headers
    app.extensions["usher"].db.dispose()


@pytest.mark.gunicorn
def test_gunicorn_and_usher_log_lines_format_without_logging_errors(database_url, tmp_path):
    """`configure_logging` skips the caller lookup for every record: gunicorn's own format (with
    the process id) and Usher's access lines must still format, from start to graceful stop."""
    log = tmp_path / "gunicorn.log"
    server = LiveServer({"DATABASE_URL": database_url, "APP_SECRET": APP_SECRET, "WEB_CONCURRENCY": "2"}, log)
    server.start()
    try:
        assert http("GET", server.url + "/healthz").status == 200
    finally:
        server.stop()
    text = log.read_text()
    assert re.search(r"\[\d+\] \[INFO\] Booting worker with pid: \d+", text), text[-2000:]
    assert re.search(r"\[\d+\] \[INFO\] Worker exiting \(pid: \d+\)", text), text[-2000:]
    assert re.search(r"INFO usher\.access GET /healthz 200 ", text), text[-2000:]
    assert "Logging error" not in text, text[-3000:]
