"""/metrics (operations contract, "Observability"): Prometheus text, summed across gunicorn
workers, on METRICS_BIND or to loopback clients only; labels carry no identifier; the example
alert rules name only metrics that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from tests.conftest import APP_SECRET
from tests.helpers import Actions, TenantActions, publishable, secret
from tests.live import ROOT, LiveServer, free_port, http

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scraped: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in scraped.items()
               if n == name and all(dict(ls).get(k) == w for k, w in labels.items()))


def scrape(client, environ=LOOPBACK, headers=None):
    return client.get("/metrics", environ_base=environ, headers=headers or {})


def test_metrics_only_to_a_loopback_peer_that_forwards_nobody(app_config):
    app = create_app(app_config)
    client = app.test_client()
    response = scrape(client)
    assert response.status_code == 200 and response.content_type.startswith("text/plain; version=0.0.4")
    for environ, headers in (({"REMOTE_ADDR": "10.1.2.3"}, {}), (LOOPBACK, {"X-Forwarded-For": "127.0.0.1"}),
                             (LOOPBACK, {"Forwarded": "for=127.0.0.1"})):
        refused = scrape(client, environ, headers)
        assert refused.status_code == 404 and refused.json == {"error": "not_found", "message": "Not found."}
    with_bind = create_app({**app_config, "METRICS_BIND": "127.0.0.1:9100"})
    assert scrape(with_bind.test_client()).status_code == 404  # served by the separate listener only
    for built in (app, with_bind):
        built.extensions["usher"].db.dispose()


def test_counters_have_bounded_labels_and_count_sign_ins_limits_otp_and_security_events(app_config, caplog):
    app = create_app({**app_config, "REFRESH_GRACE_SECONDS": 0, "GUEST_RATE_LIMIT": "3 per minute"})
    client = app.test_client()
    org = Actions(app, client).create_org()
    tenant = TenantActions(client, org["keys"]["test"], org["organizationId"])
    guest = tenant.guest()
    assert tenant.refresh(guest["refreshToken"]).status_code == 200
    with caplog.at_level("WARNING", logger="usher.security"):
        assert tenant.refresh(guest["refreshToken"]).json["error"] == "refresh_token_reused"
    [line] = [r.getMessage() for r in caplog.records if r.name == "usher.security"]
    assert line.startswith("security event refresh_token_reused ") and guest["session"]["sessionId"] in line
    assert guest["refreshToken"] not in line
    statuses = [client.post("/api/v1/auth/guest", headers=publishable(tenant.pk)).status_code for _ in range(4)]
    assert statuses.count(429) >= 1
    assert client.post("/api/v1/auth/otp/request", json={"email": "metrics@example.com"},
                       headers=publishable(tenant.pk)).status_code == 202
    queue_path = "/api/v1/experiences/exp_01HXYZ123456789ABCDEFGHJKZ"
    assert client.get(queue_path, headers=secret(tenant.sk)).status_code == 404

    text = scrape(client).get_data(as_text=True)
    scraped = samples(text)
    assert value(scraped, "usher_sign_ins_total", type="guest", mode="test") >= 1
    assert value(scraped, "usher_security_events_total", type="refresh_token_reused") == 1
    assert value(scraped, "usher_rate_limited_total", limit="guest_per_ip") == statuses.count(429)
    assert value(scraped, "usher_otp_messages_total", channel="email", outcome="sent") == 1
    assert value(scraped, "usher_http_requests_total", route="/api/v1/experiences/<string:experience_id>",
                 method="GET", status="404") == 1
    assert value(scraped, "usher_http_request_duration_seconds_count", route="/api/v1/auth/guest") >= 5
    assert value(scraped, "usher_dependency_up", dependency="database") == 1
    assert ("usher_webhook_pending", ()) in scraped  # read from the database at scrape time
    # no identifier, key, email or path in any label
    for forbidden in ("exp_01HXYZ", org["organizationId"], tenant.pk, tenant.sk, "metrics@example.com",
                      guest["session"]["sessionId"]):
        assert forbidden not in text
    app.extensions["usher"].db.dispose()


@pytest.mark.gunicorn
def test_metrics_from_four_gunicorn_workers_add_up_on_the_metrics_listener(database_url, tmp_path):
    metrics_dir, metrics_port = tmp_path / "prom", free_port()
    (metrics_dir).mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale")  # an earlier run's: emptied at start
    server = LiveServer({"DATABASE_URL": database_url, "APP_SECRET": APP_SECRET,
                         "WEB_CONCURRENCY": "4", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                         "METRICS_BIND": f"127.0.0.1:{metrics_port}"}, tmp_path / "gunicorn.log")
    server.start(timeout=120)  # four workers booting on a shared, busy machine
    try:
        assert not (metrics_dir / "counter_999999.db").exists()
        requests, errors = 400, []

        def load(count: int) -> None:
            for _ in range(count):
                reply = http("GET", server.url + "/healthz")
                if reply.status != 200:
                    errors.append(reply.status)

        threads = [threading.Thread(target=load, args=(requests // 8,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert http("GET", server.url + "/metrics").status == 404  # METRICS_BIND set: not on the main port
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        scraped = samples(text)
        assert value(scraped, "usher_http_requests_total", route="/healthz", method="GET", status="200") == requests
        assert value(scraped, "usher_http_request_duration_seconds_count", route="/healthz") == requests
        writers = {re.search(r"_(\d+)\.db$", p.name).group(1) for p in metrics_dir.glob("counter_*.db")}
        assert len(writers) >= 2, writers  # several workers' files were summed
    finally:
        server.stop()


def _exported_names() -> set[str]:
    from app.metrics import Metrics

    names = set()
    for family in Metrics().registry.collect():
        kind = family.type
        base = family.name
        names |= ({base + "_total"} if kind == "counter" else
                  {base + "_bucket", base + "_count", base + "_sum"} if kind == "histogram" else {base})
    return names | {"usher_dependency_up", "usher_webhook_pending", "usher_webhook_oldest_pending_age_seconds"}


def test_alert_rules_parse_and_name_only_exported_metrics(tmp_path):
    document = yaml.safe_load(ALERTS.read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    exported = _exported_names()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        used = set(re.findall(r"\busher_[a-z_]+\b", rule["expr"]))
        assert used and used <= exported, (rule["alert"], used - exported)
        assert rule["expr"].count("(") == rule["expr"].count(")")
    everything = " ".join(rule["expr"] for rule in rules)
    for needed in ('status=~"5.."', "histogram_quantile(0.99", 'outcome="failed"',
                   "usher_webhook_oldest_pending_age_seconds", 'type="refresh_token_reused"', "usher_dependency_up"):
        assert needed in everything, needed
    promtool = shutil.which("promtool")
    if promtool:  # the real check where Prometheus's tool is installed
        result = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True,
                                check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    assert Path(ALERTS).stat().st_size > 0
