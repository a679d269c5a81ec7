"""Running on many hosts (operations contract, "Secrets in production"): who may forward a
client address, the upgrade lock, CLI commands that name their database, the deploy/ units."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from app import create_app
from app.config import ConfigError, Settings
from tests.artifacts import record
from tests.helpers import Actions, publishable
from tests.live import ROOT, free_port, http


def _guest_statuses(app, peer: str, forwarded: list[str]) -> list[int]:
    client = app.test_client()
    pk = Actions(app, client).create_org()["keys"]["test"]["publishableKey"]
    return [client.post("/api/v1/auth/guest", headers={**publishable(pk), "X-Forwarded-For": address},
                        environ_base={"REMOTE_ADDR": peer}).status_code for address in forwarded]


@pytest.mark.parametrize(("proxies", "peer", "believed"), [
    ("10.0.0.0/8, 192.0.2.10", "10.1.2.3", True),      # a listed proxy: its X-Forwarded-For is the client
    ("10.0.0.0/8, 192.0.2.10", "192.0.2.10", True),
    ("10.0.0.0/8, 192.0.2.10", "198.51.100.7", False),  # anyone else reaching gunicorn: ignored
    ("10.0.0.0/8, 192.0.2.10", "127.0.0.1", False),     # a list replaces the loopback default
    ("", "127.0.0.1", True),                             # unset: loopback only (nginx on the same host)
    ("", "::ffff:127.0.0.1", True),
    ("", "10.1.2.3", False),
])
def test_forwarded_for_is_believed_only_from_a_listed_proxy(app_config, proxies, peer, believed):
    """The per-address guest limit (1 a minute) tells which address the app saw: two different
    forwarded clients both pass only when the header was believed."""
    app = create_app({**app_config, "TRUSTED_PROXY_COUNT": 1, "TRUSTED_PROXIES": proxies,
                      "GUEST_RATE_LIMIT": "1 per minute"})
    statuses = _guest_statuses(app, peer, ["203.0.113.1", "203.0.113.2"])
    assert statuses == ([201, 201] if believed else [201, 429])
    app.extensions["usher"].db.dispose()


def test_without_a_proxy_count_forwarded_headers_are_never_believed(app_config):
    app = create_app({**app_config, "TRUSTED_PROXIES": "10.0.0.0/8", "GUEST_RATE_LIMIT": "1 per minute"})
    assert _guest_statuses(app, "10.1.2.3", ["203.0.113.1", "203.0.113.2"]) == [201, 429]
    app.extensions["usher"].db.dispose()


@pytest.mark.parametrize(("name", "value", "message"), [
    ("TRUSTED_PROXIES", "10.0.0.0/8,nonsense", "TRUSTED_PROXIES has nonsense which is not an address or CIDR"),
    ("METRICS_BIND", "9100", "METRICS_BIND must be host:port"),
])
def test_operations_settings_are_validated_naming_the_variable(name, value, message):
    with pytest.raises(ConfigError, match=message):
        Settings.load({"DATABASE_URL": "sqlite://", "APP_SECRET": "s" * 40, name: value})


def _flask(url: str, *args: str, secret_value: str = "operations-test-secret-" + "o" * 32) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "APP_SECRET": secret_value}
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_every_cli_command_names_its_database_on_stderr_never_the_password(tmp_path):
    url = f"sqlite:///{tmp_path / 'named.sqlite3'}"
    process = _flask(url, "db", "upgrade")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert f"database: sqlite {tmp_path / 'named.sqlite3'}" in err
    process = _flask(url, "secrets", "status", "--json")
    out, err = process.communicate(timeout=120)
    assert json.loads(out) == {"fallbacks": []} and f"database: sqlite {tmp_path / 'named.sqlite3'}" in err
    from app.cli import describe_database

    assert describe_database("postgresql+psycopg://usher:hunter2@db.internal:5432/usher") == (
        "postgresql db.internal:5432/usher")


def test_two_concurrent_db_upgrades_one_waits_for_the_lock_and_none_fails(isolated_database):
    url = isolated_database("base")  # an empty database (a PostgreSQL schema of this test's own)
    if not url.startswith("postgresql"):
        pytest.skip("the upgrade lock is PostgreSQL's advisory lock (make test runs this file again on PostgreSQL)")
    from app.cli import UPGRADE_LOCK

    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as holder:  # another host's upgrade, holding the lock
        holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": UPGRADE_LOCK})
        holder.commit()
        waiting = [_flask(url, "db", "upgrade"), _flask(url, "db", "upgrade")]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with engine.connect() as probe:
                waiters = probe.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                             "AND NOT granted")).scalar()
            if waiters == 2:
                break
            assert all(p.poll() is None for p in waiting)  # nobody failed or went ahead
            time.sleep(0.1)
        assert waiters == 2
        holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": UPGRADE_LOCK})
        holder.commit()
    results = [p.communicate(timeout=120) for p in waiting]
    assert [p.returncode for p in waiting] == [0, 0], results
    assert all("another `db upgrade` holds the upgrade lock: waiting for it" in err for _, err in results)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


@pytest.mark.gunicorn
@pytest.mark.services
def test_rolling_restart_behind_nginx_under_load_loses_no_request(database_url, tmp_path):
    """Two gunicorn masters behind the repo's nginx; deploy/rolling-restart.sh restarts both in
    turn while four clients keep signing in through nginx: every answer is a 201."""
    from tests.conftest import APP_SECRET
    from tests.live import NginxServer, https

    ports = [free_port(), free_port()]
    env = {**os.environ, "DATABASE_URL": database_url, "APP_SECRET": APP_SECRET, "WEB_CONCURRENCY": "2",
           "TRUSTED_PROXY_COUNT": "1", "GUEST_RATE_LIMIT": "100000 per minute"}
    if os.environ.get("USHER_TEST_REDIS_URL"):
        env["RATELIMIT_STORAGE_URI"] = os.environ["USHER_TEST_REDIS_URL"]
    start = (f"BIND=127.0.0.1:{{port}} {sys.executable} -m gunicorn -c gunicorn.conf.py wsgi:app --daemon "
             f"--pid {tmp_path}/gunicorn-{{port}}.pid --error-logfile {tmp_path}/gunicorn-{{port}}.log")
    stop = (f"kill -TERM $(cat {tmp_path}/gunicorn-{{port}}.pid); "
            f"while [ -e {tmp_path}/gunicorn-{{port}}.pid ]; do sleep 0.1; done")

    def ready(port: int) -> bool:
        try:
            return http("GET", f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
        except OSError:
            return False

    for port in ports:
        subprocess.run(["sh", "-c", start.replace("{port}", str(port))], cwd=ROOT, env=env, check=True)
    nginx = NginxServer(tmp_path, ports[0])
    config = nginx.config()
    text = config.read_text().replace(f"server 127.0.0.1:{ports[0]} max_fails=0;",
                                      f"server 127.0.0.1:{ports[0]} max_fails=0;\n"
                                      f"        server 127.0.0.1:{ports[1]} max_fails=0;")
    nginx.config = lambda: (config.write_text(text), config)[1]
    try:
        deadline = time.monotonic() + 120
        while not all(ready(port) for port in ports):
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
        nginx.start()
        client = create_app_for(database_url)
        pk = Actions(client, client.test_client()).create_org()["keys"]["test"]["publishableKey"]
        client.extensions["usher"].db.dispose()
        statuses: list = []
        done = threading.Event()

        def load() -> None:
            while not done.is_set():
                try:
                    statuses.append(https("POST", nginx.url + "/api/v1/auth/guest", publishable(pk)).status)
                except OSError as exc:
                    statuses.append(repr(exc))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1)
        started = time.monotonic()
        script = subprocess.run([str(ROOT / "deploy" / "rolling-restart.sh"), *map(str, ports)], cwd=ROOT, env={
            **env, "UPSTREAM": str(config), "SETTLE": "2",
            "NGINX_RELOAD": f"nginx -c {config} -p {tmp_path} -s reload",
            "RESTART": f"{stop}; {start}"}, capture_output=True, text=True, timeout=300, check=False)
        took = time.monotonic() - started
        time.sleep(1)
        done.set()
        for thread in threads:
            thread.join()
        assert script.returncode == 0, script.stderr
        failed = [s for s in statuses if s != 201]
        record("operations.json", "rolling restart behind nginx", {
            "requests": len(statuses), "client_errors": len(failed), "restart_seconds": round(took, 1),
            "instances": 2})
        assert failed == [] and len(statuses) > 20, (failed[:10], len(statuses))
        assert "down" not in config.read_text()  # both back in nginx's upstream
    finally:
        nginx.stop()
        for port in ports:
            subprocess.run(["sh", "-c", stop.replace("{port}", str(port))], check=False, timeout=60)


def create_app_for(database_url: str):
    from tests.conftest import APP_SECRET

    return create_app({"TESTING": True, "DATABASE_URL": database_url, "APP_SECRET": APP_SECRET,
                       "RATELIMIT_STORAGE_URI": "memory://"})


@pytest.mark.gunicorn
def test_readyz_is_503_draining_after_sigterm_while_requests_are_still_served(database_url, tmp_path):
    import signal

    from tests.conftest import APP_SECRET
    from tests.live import LiveServer

    server = LiveServer({"DATABASE_URL": database_url, "APP_SECRET": APP_SECRET, "WEB_CONCURRENCY": "2",
                         "GUNICORN_DRAIN_SECONDS": "4"}, tmp_path / "gunicorn.log")
    server.start(timeout=120)
    try:
        assert http("GET", server.url + "/readyz").status == 200
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        while (reply := http("GET", server.url + "/readyz")).status == 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert reply.status == 503 and reply.body["status"] == "draining" and reply.headers["Retry-After"]
        assert http("GET", server.url + "/healthz").status == 200  # still serving while it drains
        assert server.process.poll() is None
        assert server.process.wait(timeout=30) == 0  # then it stops by itself, gracefully
        assert "draining for 4.0 s before stopping" in server.log()
    finally:
        server.stop()


def test_database_errors_never_carry_the_statements_values(app_config):
    """What a worker's traceback prints on a database error: the SQL, not its parameters."""
    from sqlalchemy.exc import IntegrityError

    from app.models import ApiKey

    app = create_app(app_config)
    db = app.extensions["usher"].db
    with pytest.raises(IntegrityError) as raised, db.write() as connection:
        connection.execute(ApiKey.__table__.insert().values(id="key_x", organization_id="org_missing", mode="test",
                                                             type="secret", lookup="looked-up-value-9f2c",
                                                             last4="9f2c"))
    assert "looked-up-value-9f2c" not in str(raised.value)
    assert "hidden due to hide_parameters" in str(raised.value)
    db.dispose()


UNITS = ("usher-web@.service", "usher-worker.service", "usher-purge.service")
HARDENING = {"NoNewPrivileges": "true", "CapabilityBoundingSet": "", "PrivateTmp": "true", "PrivateDevices": "true",
             "ProtectSystem": "strict", "ProtectHome": "true", "ProtectKernelTunables": "true",
             "ProtectKernelModules": "true", "ProtectControlGroups": "true", "RestrictNamespaces": "true",
             "RestrictSUIDSGID": "true", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
             "SystemCallArchitectures": "native", "LockPersonality": "true", "UMask": "0077"}


def _unit(name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (ROOT / "deploy" / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize("name", UNITS)
def test_every_unit_is_hardened_and_scores_ok_or_better(name, tmp_path):
    unit = _unit(name)
    for key, expected in HARDENING.items():
        assert unit.get(key) == [expected], (name, key, unit.get(key))
    assert unit["EnvironmentFile"] == ["/etc/usher/usher.env"]
    if name.startswith("usher-web"):
        assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"] and unit["KillSignal"] == ["SIGTERM"]
        assert unit["Type"] == ["notify"]
        assert "PROMETHEUS_MULTIPROC_DIR=/run/usher-web-%i/metrics" in unit["Environment"]
    analyze = shutil.which("systemd-analyze")
    if analyze:  # the real score where systemd is installed
        copy = tmp_path / name.replace("@.", "@8000.")
        copy.write_text((ROOT / "deploy" / name).read_text())
        result = subprocess.run([analyze, "security", "--offline=true", str(copy)], capture_output=True, text=True,
                                check=False)
        score = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", result.stdout)
        assert score and float(score.group(1)) < 2.0 and score.group(2) in ("OK", "SAFE"), result.stdout[-300:]


def test_the_environment_template_lists_every_setting_and_the_procfile_upgrades_first():
    template = (ROOT / "deploy" / "usher.env.example").read_text()
    listed = {line.split("=", 1)[0] for line in template.splitlines() if "=" in line and not line.startswith("#")}
    settings = {name.upper() for name in Settings.__dataclass_fields__}
    assert settings <= listed, settings - listed
    gunicorn = set(re.findall(r'"((?:GUNICORN|WEB)_[A-Z_]+)"', (ROOT / "gunicorn.conf.py").read_text()))
    assert gunicorn <= listed, gunicorn - listed
    procfile = (ROOT / "deploy" / "Procfile").read_text()
    assert "release: flask --app wsgi db upgrade" in procfile
