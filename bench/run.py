"""`make bench`: Usher against a bare-Flask EdDSA baseline on the same gunicorn settings, and
against Better Auth (the peer, `bench/peer/`), in the same run, driven by wrk on loopback.
Writes bench/RESULTS.md.

Scenarios: guest session, OTP verify, external exchange, refresh, protected route (queue status
with an access token), JWKS; on SQLite (with the peer's anonymous sign-in and get-session) and on
PostgreSQL + Redis. Every scenario of a backend is measured in rounds: each round runs each
scenario once, the baseline's and the peer's included, so slow drifts of a shared machine fall on
all of them alike; the figures are medians over the rounds. Then the drop (nginx -> gunicorn ->
PostgreSQL + Redis, whole shopper journeys), and guest and refresh again with 10 000 and
1 000 000 consumers and sessions already stored (SQLite).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
LUA = ROOT / "bench" / "lua"
APP_SECRET = "bench-app-secret-" + "b" * 32
CONNECTIONS, THREADS = 32, 2
# The worker model chosen by measurement (bench/PROFILE.md): sync workers, one per core. On this
# 2-core machine 2 sync workers beat 3, 4 and 6, and gthread (2 or 4 workers x 4 threads, with
# keep-alive) on SQLite, on PostgreSQL + Redis and behind nginx. BENCH_WORKERS /
# BENCH_WORKER_CLASS / BENCH_THREADS_PER_WORKER override, for comparing models.
WORKERS = os.environ.get("BENCH_WORKERS", str(os.cpu_count() or 2))
WORKER_CLASS = os.environ.get("BENCH_WORKER_CLASS", "sync")
THREADS_PER_WORKER = os.environ.get("BENCH_THREADS_PER_WORKER", "1")
PEER = ROOT / "bench" / "peer"
PEER_PROCESSES = 2

sys.path.insert(0, str(ROOT))  # also when run as a script, not with -m


# -- processes ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    def __init__(self, module: str, env: dict, name: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "WEB_CONCURRENCY": WORKERS, "GUNICORN_WORKER_CLASS": WORKER_CLASS,
                    "GUNICORN_THREADS": THREADS_PER_WORKER, **env, "BIND": f"127.0.0.1:{self.port}"}
        self.module, self.log = module, OUT / f"{name}.log"
        self.cwd = ROOT  # another checkout serves another revision (bench/compare.py)

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", self.module],
                                        cwd=self.cwd, env=self.env, stdout=open(self.log, "wb"),
                                        stderr=subprocess.STDOUT)
        for _ in range(150):
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1)
                return self
            except OSError as exc:
                if getattr(exc, "code", None):  # an HTTP answer (the baseline has no /healthz)
                    return self
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn {self.module} did not start; see {self.log}")

    def __exit__(self, *exc):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


class Peer:
    """Better Auth (pinned in bench/peer/package.json and its lock) with its anonymous plugin on
    better-sqlite3, in PEER_PROCESSES Node cluster processes, its rate limiter off. Installed here
    by `npm ci` on first use: only the bench installs it."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = OUT / "peer.log"
        self.db = OUT / "peer.sqlite3"

    def install(self) -> None:
        if not (PEER / "node_modules" / "better-auth").is_dir():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEER, check=True)

    def __enter__(self):
        self.install()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        self.process = subprocess.Popen(["node", "server.mjs"], cwd=PEER, stdout=open(self.log, "wb"),
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, "PORT": str(self.port), "BENCH_PEER_DB": str(self.db),
                                             "BENCH_PEER_PROCESSES": str(PEER_PROCESSES)})
        for _ in range(150):
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1)
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the peer did not start; see {self.log}")

    def sessions(self, count: int) -> list[str]:
        """Session cookies of `count` anonymous sign-ins (for get-session)."""
        cookies = []
        for _ in range(count):
            request = urllib.request.Request(self.url + "/api/auth/sign-in/anonymous", data=b"{}", method="POST",
                                             headers={"Content-Type": "application/json", "Origin": self.url})
            with urllib.request.urlopen(request, timeout=5) as response:
                cookies.append(response.headers["Set-Cookie"].split(";", 1)[0])
        return cookies

    def version(self) -> str:
        return json.loads((PEER / "node_modules" / "better-auth" / "package.json").read_text())["version"]

    def __exit__(self, *exc):
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


# -- wrk --------------------------------------------------------------------------------------------
def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def wrk(url: str, script: str, seconds: int, env: dict) -> dict:
    command = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(LUA / script),
               url]
    result = subprocess.run(command, env={**os.environ, **env, "BENCH_LUA": str(LUA), "BENCH_THREADS": str(THREADS)},
                            capture_output=True, text=True, check=True)
    out = result.stdout
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": _ms(re.search(r"\s50%\s+(\S+)", out).group(1)),
            "p99": _ms(re.search(r"\s99%\s+(\S+)", out).group(1)),
            "non2xx": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0,
            "socket_errors": sum(map(int, errors.groups())) if errors else 0,
            "requests": int(re.search(r"(\d+) requests in", out).group(1))}


@dataclass
class Scenario:
    """One wrk load: `prepare(rate)` (optional) makes single-use inputs for a run at up to `rate`."""

    name: str
    url: str
    script: str
    env: dict
    prepare: Callable | None = None


def summarize(results: list[dict]) -> dict:
    return {"rps": statistics.median(r["rps"] for r in results), "p50": statistics.median(r["p50"] for r in results),
            "p99": statistics.median(r["p99"] for r in results),
            "non2xx": sum(r["non2xx"] for r in results), "socket_errors": sum(r["socket_errors"] for r in results),
            "runs": [round(r["rps"]) for r in results]}


def rounds(scenarios: list[Scenario], runs: int, seconds: int) -> dict:
    """A 2 s warm-up of each, then `runs` rounds that run every scenario once, in turn; medians
    of req/s, p50, p99 per scenario; non-2xx and socket errors summed."""
    best: dict[str, float] = {}
    for scenario in scenarios:
        if scenario.prepare:
            scenario.prepare(None)
        best[scenario.name] = wrk(scenario.url, scenario.script, 2, scenario.env)["rps"]
    results: dict[str, list[dict]] = {scenario.name: [] for scenario in scenarios}
    for _ in range(runs):
        for scenario in scenarios:
            if scenario.prepare:
                scenario.prepare(best[scenario.name])
            result = wrk(scenario.url, scenario.script, seconds, scenario.env)
            best[scenario.name] = max(best[scenario.name], result["rps"])
            results[scenario.name].append(result)
    return {name: summarize(found) for name, found in results.items()}


# -- seeding (in-process, through Usher's own services) ---------------------------------------------
class Seeder:
    def __init__(self, database_url: str, limits_url: str):
        from app import create_app

        self.app = create_app({"DATABASE_URL": database_url, "APP_SECRET": APP_SECRET, "RATELIMIT_STORAGE_URI":
                               limits_url, "ISSUER": "http://usher.bench", "KEYRING_CACHE_SECONDS": 3600})
        self.usher = self.app.extensions["usher"]
        from app.services.orgs import create_organization

        with self.usher.db.transaction() as session:
            created = create_organization(session, APP_SECRET, "Bench")
        self.org_id, self.keys = created["organizationId"], created["keys"]["test"]
        client = self.app.test_client()
        client.patch("/api/v1/settings", headers={"Authorization": f"Bearer {self.keys['secretKey']}"},
                     json={"otpRequestsPerIpPerHour": 100000, "otpVerifiesPerIpPerHour": 100000,
                           "otpRequestsPerHour": 100, "otpCooldown": 1})
        self.batch = 0

    def _ctx(self, session):
        from app.security.callers import RequestContext, organization_snapshot

        return RequestContext(organization=organization_snapshot(session, self.org_id, "test"), mode="test",
                              key_type="secret",
                              key_id="bench")

    def guests(self, count: int) -> list[dict]:
        from app.models import Consumer, new_id
        from app.security.callers import organization_snapshot
        from app.services.sessions import start_session

        tokens = self.usher.auth.tokens
        kids = tokens.current_kids()
        out = []
        with self.usher.db.transaction() as session:
            organization = organization_snapshot(session, self.org_id, "test")
            for _ in range(count):
                consumer = Consumer(id=new_id("guest"), organization_id=self.org_id, mode="test",
                                    created_at=datetime.now(UTC))
                session.add(consumer)
                session.flush()
                _, access, refresh = start_session(session, tokens, kids, APP_SECRET, organization, "test",
                                                   consumer.id, "guest", self.usher.clock())
                out.append({"consumer": consumer.id, "access": access, "refresh": refresh})
        return out

    def otp_codes(self, count: int) -> list[str]:
        """Request codes through the OTP service (test mode: captured), then read the outbox."""
        from sqlalchemy import select

        from app.models import CapturedMessage
        from app.otp.identifiers import Identifier
        from app.otp.service import request_code

        self.batch += 1
        start = datetime.now(UTC)
        with self.app.test_request_context():
            session = self.usher.db.sessionmaker()
            from app.security.callers import organization_snapshot

            organization = organization_snapshot(session, self.org_id, "test")
            for i in range(count):
                request_code(self.usher.db, self.usher.senders, APP_SECRET,
                             organization, "test", Identifier("email", f"b{self.batch}-{i}@bench.example"),
                             self.usher.clock())
            rows = session.scalars(select(CapturedMessage).where(CapturedMessage.organization_id == self.org_id,
                                                                 CapturedMessage.created_at >= start)).all()
            lines = []
            for row in rows:
                _body, code = self.usher.senders.capture.read(row)  # the outbox keeps each code
                lines.append(f"{row.recipient} {code}")
            session.close()
        return lines

    def exchange_codes(self, count: int) -> list[str]:
        from app.grants.external import create_exchange_code

        with self.usher.db.sessionmaker() as session:
            ctx = self._ctx(session)
        return [create_exchange_code(self.usher.auth, ctx, {"provider": "bench", "issuer": "https://shop.example",
                                                            "subject": f"user-{i % 5000}"})["exchange_code"]
                for i in range(count)]

    def queue_tokens(self, count: int) -> tuple[str, list[str]]:
        client = self.app.test_client()
        secret = {"Authorization": f"Bearer {self.keys['secretKey']}"}
        experience = client.post("/api/v1/experiences", json={"name": "Drop"}, headers=secret).json
        queue = client.post("/api/v1/queues", json={"experienceId": experience["id"], "name": "Main"},
                            headers=secret).json
        guests = self.guests(count)
        for guest in guests:
            client.post(f"/api/v1/queues/{queue['id']}/enter",
                        headers={"X-Publishable-Key": self.keys["publishableKey"],
                                 "Authorization": f"Bearer {guest['access']}"})
        return queue["id"], [g["access"] for g in guests]

    def bulk_consumers(self, total: int) -> None:
        """Consumers and sessions already stored (Core bulk inserts, realistic row shapes)."""
        import secrets as rnd

        from sqlalchemy import func, insert, select

        from app.models import AuthSession, Consumer, new_id

        with self.usher.db.sessionmaker() as session:
            have = session.scalar(select(func.count()).select_from(Consumer))
        now = datetime.now(UTC)
        iat = int(now.timestamp())
        kids = self.usher.auth.tokens.current_kids()
        chunk = 10000
        while have < total:
            n = min(chunk, total - have)
            consumers = [{"id": new_id("guest"), "organization_id": self.org_id, "mode": "test", "created_at": now}
                         for _ in range(n)]
            sessions = [{"id": new_id("sess"), "organization_id": self.org_id, "mode": "test",
                         "consumer_id": c["id"], "type": "guest", "created_at": now, "expires_at": now,
                         "refresh_hash": rnd.token_hex(32), "generation_kid": kids.access,
                         "generation_refresh_kid": kids.refresh, "generation_iat": iat,
                         "generation_access_exp": iat + 3600, "generation_refresh_exp": iat + 86400}
                        for c in consumers]
            with self.usher.db.transaction() as session:
                session.execute(insert(Consumer), consumers)
                session.execute(insert(AuthSession), sessions)
            have += n

    def close(self):
        self.usher.db.dispose()


# -- the run ----------------------------------------------------------------------------------------
def write_lines(name: str, lines: list[str]) -> str:
    path = OUT / f"{name}.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def refresh_env(seeder: Seeder, label: str) -> dict:
    return {"USHER_PK": seeder.keys["publishableKey"], "BENCH_FILE": str(OUT / f"{label}-refresh.txt"),
            "BENCH_KIND": "refresh", "BENCH_PATH": "/api/v1/auth/refresh"}


def refresh_sessions(seeder: Seeder, label: str):
    """Fresh sessions before every wrk run: each run rotates the tokens it was given."""
    return lambda _rate: write_lines(f"{label}-refresh", [g["refresh"] for g in seeder.guests(400)])


def usher_env(database_url: str, limits_url: str) -> dict:
    # Every virtual client comes from 127.0.0.1: the per-address limits are raised so they measure
    # the work, not the refusals (the limits themselves still run on every request).
    return {"DATABASE_URL": database_url, "APP_SECRET": APP_SECRET, "RATELIMIT_STORAGE_URI": limits_url,
            "ISSUER": "http://usher.bench", "GUEST_RATE_LIMIT": "100000000 per minute",
            "EXCHANGE_RATE_LIMIT": "100000000 per minute"}


def bare_token() -> str:
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    return jwt.encode({"sub": "guest_x", "iat": int(time.time()), "exp": int(time.time()) + 86400}, key,
                      algorithm="EdDSA", headers={"kid": "k1"})


def baseline_scenarios(server: Gunicorn) -> list[Scenario]:
    return [Scenario("bare sign", server.url + "/sign", "guest.lua", {"USHER_PK": "-"}),
            Scenario("bare verify", server.url + "/verify", "get.lua", {"BENCH_AUTH": f"Bearer {bare_token()}"})]


def peer_scenarios(peer: Peer) -> list[Scenario]:
    return [Scenario("peer anonymous sign-in", peer.url + "/api/auth/sign-in/anonymous", "peer_guest.lua",
                     {"BENCH_ORIGIN": peer.url}),
            Scenario("peer get-session", peer.url, "pool.lua", {
                "BENCH_FILE": write_lines("peer-cookies", peer.sessions(64)), "BENCH_KIND": "cookie",
                "BENCH_PATH": "/api/auth/get-session"})]


def otp_scenario(name: str, label: str, seeder: Seeder, server: Gunicorn, seconds: int) -> Scenario:
    """OTP verify: fresh codes before every run (each is single use)."""

    def codes(rate):
        count = 3000 if rate is None else int(rate * seconds * 1.5) + 500
        write_lines(f"{label}-otp", seeder.otp_codes(count))

    return Scenario(name, server.url, "pool.lua", {"USHER_PK": seeder.keys["publishableKey"],
                                                   "BENCH_FILE": str(OUT / f"{label}-otp.txt"), "BENCH_KIND": "otp",
                                                   "BENCH_PATH": "/api/v1/auth/otp/verify"}, codes)


def usher_scenarios(label: str, seeder: Seeder, server: Gunicorn, seconds: int) -> list[Scenario]:
    pk = seeder.keys["publishableKey"]
    base = {"USHER_PK": pk}

    def exchange(rate):
        count = 3000 if rate is None else int(rate * seconds * 1.5) + 500
        write_lines(f"{label}-exchange", seeder.exchange_codes(count))

    queue_id, tokens = seeder.queue_tokens(64)
    return [
        Scenario("guest session", server.url + "/api/v1/auth/guest", "guest.lua", base),
        Scenario("refresh", server.url, "pool.lua", refresh_env(seeder, label), refresh_sessions(seeder, label)),
        otp_scenario("OTP verify", label, seeder, server, seconds),
        Scenario("external exchange", server.url, "pool.lua", {
            **base, "BENCH_FILE": str(OUT / f"{label}-exchange.txt"), "BENCH_KIND": "exchange",
            "BENCH_PATH": "/api/v1/auth/external/exchange"}, exchange),
        Scenario("protected route (queue status)", server.url, "pool.lua", {
            **base, "BENCH_FILE": write_lines(f"{label}-access", tokens), "BENCH_KIND": "status",
            "BENCH_PATH": f"/api/v1/queues/{queue_id}/status"}),
        Scenario("JWKS", server.url + "/.well-known/jwks.json", "get.lua", {}),
    ]


def backend_scenarios(label: str, database_url: str, limits_url: str, runs: int, seconds: int,
                      with_peer: bool) -> dict:
    """Usher's scenarios, the baseline's and (on SQLite) the peer's, in rounds."""
    seeder = Seeder(database_url, limits_url)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(Gunicorn("wsgi:app", usher_env(database_url, limits_url), f"usher-{label}"))
        bare = stack.enter_context(Gunicorn("bench.baseline:app", {}, f"baseline-{label}"))
        scenarios = usher_scenarios(label, seeder, server, seconds) + baseline_scenarios(bare)
        if with_peer:
            scenarios += peer_scenarios(stack.enter_context(Peer()))
        results = rounds(scenarios, runs, seconds)
    seeder.close()
    return results


def scale_scenarios(database_url: str, runs: int, seconds: int, sizes: list[int]) -> dict:
    results = {}
    seeder = Seeder(database_url, "memory://")
    pk = seeder.keys["publishableKey"]
    for size in sizes:
        started = time.monotonic()
        seeder.bulk_consumers(size)
        seeded = round(time.monotonic() - started, 1)
        with Gunicorn("wsgi:app", usher_env(database_url, "memory://"), f"usher-scale-{size}") as server:
            found = rounds([Scenario("guest session", server.url + "/api/v1/auth/guest", "guest.lua", {"USHER_PK": pk}),
                            Scenario("refresh", server.url, "pool.lua", refresh_env(seeder, f"scale-{size}"),
                                     refresh_sessions(seeder, f"scale-{size}"))], runs, seconds)
        results[size] = {**found, "seed_seconds": seeded}
    seeder.close()
    return results


# -- the drop ---------------------------------------------------------------------------------------
DROP_SHOPPERS = 32
DROP_STEPS = ["guest", "enter", "status", "otp request", "outbox read", "otp verify"]


def drop_wrk(url: str, seconds: int, env: dict) -> dict:
    """One wrk run of bench/lua/drop.lua (one connection per wrk thread, one shopper at a time);
    per-step latencies, journeys and errors from the files its threads write."""
    folder = OUT / "drop"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    command = ["wrk", f"-t{DROP_SHOPPERS}", f"-c{DROP_SHOPPERS}", f"-d{seconds}s", "-s", str(LUA / "drop.lua"), url]
    result = subprocess.run(command, env={**os.environ, **env, "BENCH_OUT": str(folder), "BENCH_LUA": str(LUA)},
                            capture_output=True, text=True, check=True)
    out = result.stdout
    duration = float(re.search(r"requests in ([\d.]+)s", out).group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    latencies: dict[str, list[float]] = {}
    failed: dict[str, int] = {}
    journeys = 0
    for path in folder.glob("drop-*.txt"):
        for line in path.read_text().splitlines():
            if line == "journey":
                journeys += 1
            elif line.startswith("error "):
                failed[line[6:]] = failed.get(line[6:], 0) + 1
            else:
                name, _, ms = line.rpartition(" ")
                latencies.setdefault(name, []).append(float(ms))

    def percentile(values: list[float], p: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, max(0, round(len(ordered) * p) - 1))]

    return {"journeys": journeys, "seconds": duration, "journeys_per_second": journeys / duration,
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "steps": {name: {"count": len(v), "p50": percentile(v, 0.50), "p99": percentile(v, 0.99)}
                      for name, v in latencies.items()},
            "errors": failed, "socket_errors": sum(map(int, errors.groups())) if errors else 0}


def drop_scenario(runs: int, seconds: int) -> dict | None:
    """nginx (deploy/nginx.conf, TLS) -> gunicorn -> PostgreSQL + Redis, whole journeys."""
    from tests.live import NginxServer

    if not shutil.which("nginx"):
        print("nginx is not installed: the drop scenario was NOT run", file=sys.stderr)
        return None
    pg, rd = postgres_url(), redis_url()
    if not (pg and rd):
        return None
    from app.cli import upgrade_database

    upgrade_database(pg)
    seeder = Seeder(pg, rd)
    client = seeder.app.test_client()
    secret = {"Authorization": f"Bearer {seeder.keys['secretKey']}"}
    experience = client.post("/api/v1/experiences", json={"name": "Drop"}, headers=secret).json
    queue = client.post("/api/v1/queues", json={"experienceId": experience["id"], "name": "Main"}, headers=secret).json
    env = {**usher_env(pg, rd), "TRUSTED_PROXY_COUNT": "1", "ISSUER": "https://usher.bench"}
    lua = {"USHER_PK": seeder.keys["publishableKey"], "USHER_SK": seeder.keys["secretKey"], "BENCH_QUEUE": queue["id"],
           "BENCH_OTP_EVERY": "10"}
    workdir = OUT / "nginx"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    with Gunicorn("wsgi:app", env, "usher-drop") as server:
        nginx = NginxServer(workdir, server.port)
        nginx.start()
        try:
            drop_wrk(nginx.url, 3, lua)  # warm-up
            results = [drop_wrk(nginx.url, seconds, lua) for _ in range(runs)]
        finally:
            nginx.stop()
    seeder.close()
    steps = {name: {"p50": statistics.median(r["steps"][name]["p50"] for r in results if name in r["steps"]),
                    "p99": statistics.median(r["steps"][name]["p99"] for r in results if name in r["steps"]),
                    "count": sum(r["steps"][name]["count"] for r in results if name in r["steps"])}
             for name in DROP_STEPS if any(name in r["steps"] for r in results)}
    errors: dict[str, int] = {}
    for r in results:
        for name, n in r["errors"].items():
            errors[name] = errors.get(name, 0) + n
    return {"journeys_per_second": statistics.median(r["journeys_per_second"] for r in results),
            "runs": [round(r["journeys_per_second"], 1) for r in results],
            "requests_per_second": statistics.median(r["requests"] / r["seconds"] for r in results),
            "journeys": sum(r["journeys"] for r in results), "steps": steps, "errors": errors,
            "socket_errors": sum(r["socket_errors"] for r in results)}


def postgres_url() -> str | None:
    import psycopg

    try:
        with psycopg.connect("postgresql://127.0.0.1:5432/postgres", autocommit=True, connect_timeout=2) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'usher_bench'").fetchone():
                conn.execute("CREATE DATABASE usher_bench")
        with psycopg.connect("postgresql://127.0.0.1:5432/usher_bench", autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
    except psycopg.Error as exc:
        print(f"PostgreSQL not available: {exc}", file=sys.stderr)
        return None
    return "postgresql+psycopg://127.0.0.1:5432/usher_bench"


def redis_url() -> str | None:
    import redis

    try:
        client = redis.Redis.from_url("redis://127.0.0.1:6379/14", socket_connect_timeout=2)
        client.flushdb()
    except redis.RedisError as exc:
        print(f"Redis not available: {exc}", file=sys.stderr)
        return None
    return "redis://127.0.0.1:6379/14"


# (reference, target ratio) per scenario and backend (issue 16); p99 ≤ 50 ms everywhere.
TARGETS = {
    "sqlite": {"guest session": ("bare sign", 0.30), "refresh": ("bare sign", 0.35), "OTP verify": ("bare sign", 0.22),
               "external exchange": ("bare sign", 0.22), "protected route (queue status)": ("bare verify", 0.60)},
    "postgres": {"guest session": ("bare sign", 0.25), "refresh": ("bare sign", 0.25),
                 "OTP verify": ("bare sign", 0.15), "external exchange": ("bare sign", None),
                 "protected route (queue status)": ("bare verify", 0.45)},
}
PEER_TARGETS = {"guest session": ("peer anonymous sign-in", 1.5),
                "protected route (queue status)": ("peer get-session", 1.2)}
P99_TARGET_MS = 50
REFERENCES = ("bare sign", "bare verify", "peer anonymous sign-in", "peer get-session")


def _ratio(value: float, reference: float | None, target: float | None, percent: bool) -> tuple[str, str]:
    if reference is None:
        return "–", "–"
    ratio = value / reference
    shown = f"{ratio:.0%}" if percent else f"{ratio:.2f} ×"
    if target is None:
        return shown, "–"
    goal = f"≥ {target:.0%}" if percent else f"≥ {target:.1f} ×"
    return shown, goal + (" ✓" if ratio >= target else " ✗")


def backend_table(kind: str, results: dict) -> list[str]:
    lines = [("| scenario | req/s | runs | p50 ms | p99 ms | errors | vs bare route | target | vs Better Auth | "
              "target |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if name in REFERENCES:
            continue
        ref, target = TARGETS[kind].get(name, (None, None))
        bare = _ratio(r["rps"], results[ref]["rps"] if ref else None, target, True)
        peer_ref, peer_target = PEER_TARGETS.get(name, (None, None))
        peer = _ratio(r["rps"], results[peer_ref]["rps"] if peer_ref in results else None, peer_target, False)
        p99 = f"{r['p99']:.1f}" + ("" if r["p99"] <= P99_TARGET_MS else " ✗")
        lines.append(f"| {name} | {r['rps']:.0f} | {', '.join(map(str, r['runs']))} | {r['p50']:.1f} | {p99} | "
                     f"{r['non2xx'] + r['socket_errors']} | {bare[0]} of {ref or '–'} | {bare[1]} | {peer[0]} | "
                     f"{peer[1]} |")
    for name in REFERENCES:
        if name in results:
            r = results[name]
            lines.append(f"| *{name}* | {r['rps']:.0f} | {', '.join(map(str, r['runs']))} | {r['p50']:.1f} | "
                         f"{r['p99']:.1f} | {r['non2xx'] + r['socket_errors']} | | | | |")
    return lines


def drop_table(drop: dict) -> list[str]:
    lines = [(f"**{drop['journeys_per_second']:.1f} completed journeys/s** (median; runs "
             f"{', '.join(map(str, drop['runs']))}), {drop['requests_per_second']:.0f} requests/s, "
             f"{drop['journeys']} journeys in all; errors: "
             f"{sum(drop['errors'].values()) + drop['socket_errors']} "
             f"({', '.join(f'{k}: {v}' for k, v in drop['errors'].items()) or 'none'}; socket errors "
             f"{drop['socket_errors']})."), "",
             "| step | requests | p50 ms | p99 ms |", "|---|---|---|---|"]
    for name, step in drop["steps"].items():
        shown = name + (" (harness: reads the code from the test outbox)" if name == "outbox read" else "")
        lines.append(f"| {shown} | {step['count']} | {step['p50']:.1f} | {step['p99']:.1f} |")
    return lines


DROP100K_TEXT = (
    "`python -m bench.drop100k [--before REV]` (this part of `make bench`, without `--before`): gunicorn with 2 "
    "sync workers → PostgreSQL + Redis, on loopback, with a queue already holding 100,000 entries (bulk-inserted, "
    "counted as the migration counts them). **Journeys**: 32 shoppers, one after another on each connection: a "
    "guest session, enter at the back, then status polls over a 300 s waiting window of the shopper's time, "
    "waiting what each answer's `pollAfter` says (5 s where the answer has none, the revision before it); the "
    "waits are counted, not slept, so journeys/s (the request rate over the requests a journey takes) is how "
    "many such 5-minute waits the server carries per second. **Status only**: 64 shoppers at places "
    "100,001-100,064 polling flat out (wrk, 32 connections); PostgreSQL CPU per status is the CPU time "
    "(/proc/PID/stat) of the database's backends over the run divided by the requests (pg_stat_statements is "
    "not loaded here). Connections per worker: `ss` on each gunicorn worker after the run.")


def report(backends: dict, drop: dict | None, scale: dict, meta: dict, hundred: dict | None = None) -> str:
    lines = ["# Benchmark results", "",
             (f"Measured {meta['date']} by `{meta['command']}`: {meta['seconds']} s × {meta['runs']} rounds after "
              f"a 2 s warm-up of each scenario; in each round every scenario of a backend runs once, in turn "
              f"(Usher's, the baseline's and the peer's); medians over the rounds. wrk, {CONNECTIONS} connections, "
              f"{THREADS} threads, on loopback."), "",
             f"Machine: {meta['machine']}. Versions: {meta['versions']}.", "",
             (f"**Usher**: gunicorn with {WORKERS} {WORKER_CLASS} workers"
              + (f" × {THREADS_PER_WORKER} threads" if WORKER_CLASS == "gthread" else "")
              + " (`gunicorn.conf.py`); its per-address limits raised (every wrk client is 127.0.0.1) but "
              "still checked on every request. **Bare route** (`bench/baseline.py`): a bare Flask app on the "
              "same gunicorn settings that signs one EdDSA JWT (`POST /sign`) or verifies one (`GET /verify`). "
              f"**Better Auth** (`bench/peer/`): {meta['peer']} with its anonymous plugin on better-sqlite3, "
              f"{PEER_PROCESSES} Node processes (cluster), **its rate limiter off**; anonymous sign-in and "
              "get-session with the session cookie. ✓/✗: the issue-16 target met or not; p99 marked ✗ above "
              f"{P99_TARGET_MS} ms."), ""]
    for label, (kind, results) in backends.items():
        lines += [f"## {label}", "", *backend_table(kind, results), ""]
    if drop:
        lines += ["## The drop: nginx → gunicorn → PostgreSQL + Redis", "",
                  (f"{DROP_SHOPPERS} virtual shoppers over HTTPS through `deploy/nginx.conf` (TLS, upstream "
                   "keepalive, `TRUSTED_PROXY_COUNT=1`), each playing whole journeys one after another: a guest "
                   "session, queue enter, five status polls, and one in ten signs in by OTP carrying its guest "
                   "token (code request, verify; the code is read from the test outbox with the secret key, a "
                   "harness step a shopper does not make). Per-step latency measured by the load script "
                   "(`bench/lua/drop.lua`)."), "", *drop_table(drop), ""]
    if hundred:
        from bench.drop100k import table

        lines += ["## The drop with 100,000 queued: gunicorn → PostgreSQL + Redis", "", DROP100K_TEXT, "",
                  *table(hundred), ""]
    if scale:
        lines += ["## Stored consumers and sessions (SQLite)", "",
                  "| stored | scenario | req/s | p50 ms | p99 ms | errors | vs smallest |",
                  "|---|---|---|---|---|---|---|"]
        first = scale[min(scale)]
        for size, results in scale.items():
            for name in ("guest session", "refresh"):
                r = results[name]
                lines.append(f"| {size:,} | {name} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
                             f"{r['non2xx'] + r['socket_errors']} | {r['rps'] / first[name]['rps']:.0%} |")
    lines += ["", "Raw figures: `bench/out/results.json` (not committed)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--scale", default="10000,1000000", help="stored consumers; empty to skip")
    parser.add_argument("--only", default="sqlite,postgres,drop,drop100k,botdefense", help="parts to run")
    parser.add_argument("--no-peer", action="store_true", help="skip Better Auth")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (make bench installs it with apt-get)")
    OUT.mkdir(parents=True, exist_ok=True)
    from app.cli import upgrade_database

    with_peer = not args.no_peer
    if with_peer:
        if not shutil.which("npm"):
            sys.exit("npm is not installed: it installs the Better Auth peer (or pass --no-peer)")
        Peer().install()
    backends = {}
    if "sqlite" in args.only:
        path = OUT / "bench.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        upgrade_database(f"sqlite:///{path}")
        backends["SQLite (in-memory limits per worker)"] = ("sqlite", backend_scenarios(
            "sqlite", f"sqlite:///{path}", "memory://", args.runs, args.seconds, with_peer))
    if "postgres" in args.only and (pg := postgres_url()) and (rd := redis_url()):
        upgrade_database(pg)
        backends["PostgreSQL + Redis"] = ("postgres", backend_scenarios("postgres", pg, rd, args.runs, args.seconds,
                                                                         False))
    drop = drop_scenario(args.runs, args.seconds * 2) if "drop" in args.only else None
    hundred = None
    if "drop100k" in args.only and (pg := postgres_url()) and (rd := redis_url()):
        from bench.drop100k import measure

        hundred = measure(pg, rd, None, args.runs, args.seconds + 5, args.seconds - 2, 100_000)
    scale = {}
    if args.scale:
        path = OUT / "scale.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        upgrade_database(f"sqlite:///{path}")
        scale = scale_scenarios(f"sqlite:///{path}", args.runs, args.seconds, [int(s) for s in args.scale.split(",")])
    versions = ", ".join(f"{name} {__import__('importlib.metadata').metadata.version(name)}"
                         for name in ("flask", "gunicorn", "sqlalchemy", "pyjwt", "cryptography", "psycopg"))
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False).stdout.split()[1]
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "make bench" + ("" if len(sys.argv) == 1 else " # " + " ".join(sys.argv[1:])),
            "runs": args.runs, "seconds": args.seconds,
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.platform()}, Python "
                       f"{platform.python_version()}",
            "versions": f"{versions}, wrk {wrk_version}, Node.js {node}",
            "peer": f"Better Auth {Peer().version()}" if with_peer else "(not run)"}
    (OUT / "results.json").write_text(json.dumps({"backends": backends, "drop": drop, "scale": scale, "meta": meta,
                                                  "drop100k": hundred and hundred["summary"]}, indent=2))
    (ROOT / "bench" / "RESULTS.md").write_text(report(backends, drop, scale, meta, hundred))
    if "botdefense" in args.only:  # its own section of RESULTS.md (bench/botdefense.py)
        from bench.botdefense import run as bot_defense

        path = OUT / "botdefense.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        upgrade_database(f"sqlite:///{path}")
        bot_defense(f"sqlite:///{path}", "memory://", args.runs, args.seconds, 5, 800_000)
    print((ROOT / "bench" / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
