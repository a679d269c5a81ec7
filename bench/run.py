"""`make bench`: Usher against a bare-Flask EdDSA baseline, on the same gunicorn settings and in
the same run, driven by wrk on loopback. Writes bench/RESULTS.md.

Scenarios: guest session, OTP verify, external exchange, refresh, protected route (queue status
with an access token), JWKS; on SQLite and on PostgreSQL + Redis; then guest and refresh again
with 10 000 and 1 000 000 consumers and sessions already stored (SQLite).
"""

from __future__ import annotations

import argparse
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
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
LUA = ROOT / "bench" / "lua"
APP_SECRET = "bench-app-secret-" + "b" * 32
CONNECTIONS, THREADS = 32, 2
WORKERS = "4"

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
        self.env = {**os.environ, **env, "BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": WORKERS,
                    "GUNICORN_WORKER_CLASS": "sync"}
        self.module, self.log = module, OUT / f"{name}.log"

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", self.module],
                                        cwd=ROOT, env=self.env, stdout=open(self.log, "wb"),
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


def measure(url: str, script: str, env: dict, runs: int, seconds: int, prepare=None) -> dict:
    """A short warm-up, then `runs` runs; medians of req/s, p50, p99; non-2xx summed."""
    if prepare:
        prepare(None)
    warm = wrk(url, script, 2, env)
    results = []
    for _ in range(runs):
        if prepare:
            prepare(warm["rps"] if not results else max(r["rps"] for r in results))
        results.append(wrk(url, script, seconds, env))
    return {"rps": statistics.median(r["rps"] for r in results), "p50": statistics.median(r["p50"] for r in results),
            "p99": statistics.median(r["p99"] for r in results),
            "non2xx": sum(r["non2xx"] for r in results), "socket_errors": sum(r["socket_errors"] for r in results),
            "runs": [round(r["rps"]) for r in results]}


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
                code = re.search(r"\b(\d{6})\b", self.usher.senders.capture.read(row)).group(1)
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


def backend_scenarios(label: str, database_url: str, limits_url: str, runs: int, seconds: int) -> dict:
    seeder = Seeder(database_url, limits_url)
    pk = seeder.keys["publishableKey"]
    env = {"DATABASE_URL": database_url, "APP_SECRET": APP_SECRET, "RATELIMIT_STORAGE_URI": limits_url,
           "ISSUER": "http://usher.bench", "GUEST_RATE_LIMIT": "100000000 per minute", "EXCHANGE_RATE_LIMIT":
           "100000000 per minute"}
    results = {}
    with Gunicorn("wsgi:app", env, f"usher-{label}") as server:
        base = {"USHER_PK": pk}
        results["guest session"] = measure(server.url + "/api/v1/auth/guest", "guest.lua", base, runs, seconds)
        results["refresh"] = measure(server.url, "pool.lua", refresh_env(seeder, label), runs, seconds,
                                     prepare=refresh_sessions(seeder, label))

        def otp(rate):
            count = 3000 if rate is None else int(rate * seconds * 1.5) + 500
            write_lines(f"{label}-otp", seeder.otp_codes(count))

        results["OTP verify"] = measure(server.url, "pool.lua", {**base, "BENCH_FILE": str(OUT / f"{label}-otp.txt"),
                                                                 "BENCH_KIND": "otp",
                                                                 "BENCH_PATH": "/api/v1/auth/otp/verify"},
                                        runs, seconds, prepare=otp)

        def exchange(rate):
            count = 3000 if rate is None else int(rate * seconds * 1.5) + 500
            write_lines(f"{label}-exchange", seeder.exchange_codes(count))

        results["external exchange"] = measure(server.url, "pool.lua", {
            **base, "BENCH_FILE": str(OUT / f"{label}-exchange.txt"), "BENCH_KIND": "exchange",
            "BENCH_PATH": "/api/v1/auth/external/exchange"}, runs, seconds, prepare=exchange)
        queue_id, tokens = seeder.queue_tokens(64)
        results["protected route (queue status)"] = measure(server.url, "pool.lua", {
            **base, "BENCH_FILE": write_lines(f"{label}-access", tokens), "BENCH_KIND": "status",
            "BENCH_PATH": f"/api/v1/queues/{queue_id}/status"}, runs, seconds)
        results["JWKS"] = measure(server.url + "/.well-known/jwks.json", "get.lua", {}, runs, seconds)
    seeder.close()
    return results


def scale_scenarios(database_url: str, runs: int, seconds: int, sizes: list[int]) -> dict:
    results = {}
    seeder = Seeder(database_url, "memory://")
    pk = seeder.keys["publishableKey"]
    env = {"DATABASE_URL": database_url, "APP_SECRET": APP_SECRET, "RATELIMIT_STORAGE_URI": "memory://",
           "ISSUER": "http://usher.bench", "GUEST_RATE_LIMIT": "100000000 per minute"}
    for size in sizes:
        started = time.monotonic()
        seeder.bulk_consumers(size)
        seeded = round(time.monotonic() - started, 1)
        with Gunicorn("wsgi:app", env, f"usher-scale-{size}") as server:
            guest = measure(server.url + "/api/v1/auth/guest", "guest.lua", {"USHER_PK": pk}, runs, seconds)
            refresh = measure(server.url, "pool.lua", refresh_env(seeder, f"scale-{size}"), runs, seconds,
                              prepare=refresh_sessions(seeder, f"scale-{size}"))
        results[size] = {"guest session": guest, "refresh": refresh, "seed_seconds": seeded}
    seeder.close()
    return results


def baseline(runs: int, seconds: int) -> dict:
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    token = jwt.encode({"sub": "guest_x", "iat": int(time.time()), "exp": int(time.time()) + 86400}, key,
                       algorithm="EdDSA", headers={"kid": "k1"})
    with Gunicorn("bench.baseline:app", {}, "baseline") as server:
        sign = measure(server.url + "/sign", "guest.lua", {"USHER_PK": "-"}, runs, seconds)
        verify = measure(server.url + "/verify", "get.lua", {"BENCH_AUTH": f"Bearer {token}"}, runs, seconds)
    return {"sign": sign, "verify": verify}


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


TARGETS = {"guest session": ("sign", 0.30), "refresh": ("sign", 0.35), "OTP verify": ("sign", 0.22),
           "external exchange": ("sign", 0.22), "protected route (queue status)": ("verify", 0.60)}


def report(base: dict, backends: dict, scale: dict, meta: dict) -> str:
    lines = ["# Benchmark results", "",
             (f"Measured {meta['date']} by `{meta['command']}` ({meta['seconds']} s × {meta['runs']} runs per "
              f"scenario after a 2 s warm-up; medians; wrk {CONNECTIONS} connections, {THREADS} threads, "
              "on loopback)."),
             "", f"Machine: {meta['machine']}. Versions: {meta['versions']}.", "",
             (f"Every server is gunicorn with {WORKERS} sync workers (`gunicorn.conf.py`). The **baseline** is "
              "`bench/baseline.py`: a bare Flask app that signs one EdDSA JWT (`POST /sign`) or verifies one "
              "(`GET /verify`), measured in the same run. Ratios are Usher's req/s over the baseline's."), "",
             "| baseline | req/s | p50 ms | p99 ms | non-2xx |", "|---|---|---|---|---|"]
    for name, r in base.items():
        lines.append(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['non2xx']} |")
    for label, results in backends.items():
        lines += ["", f"## {label}", "",
                  "| scenario | req/s | p50 ms | p99 ms | non-2xx | ratio to baseline | target |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in results.items():
            ref, target = TARGETS.get(name, (None, None))
            ratio = f"{r['rps'] / base[ref]['rps']:.0%} of {ref}" if ref else "–"
            goal = f"≥ {target:.0%}" if target else "–"
            failed = r["non2xx"] + r["socket_errors"]
            lines.append(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {failed} | {ratio} | {goal} |")
    if scale:
        lines += ["", "## Stored consumers and sessions (SQLite)", "",
                  "| stored | scenario | req/s | p50 ms | p99 ms | non-2xx | vs smallest |",
                  "|---|---|---|---|---|---|---|"]
        first = scale[min(scale)]
        for size, results in scale.items():
            for name in ("guest session", "refresh"):
                r = results[name]
                lines.append(f"| {size:,} | {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                             f"{r['non2xx'] + r['socket_errors']} | {r['rps'] / first[name]['rps']:.0%} |")
    lines += ["", "Raw figures: `bench/out/results.json` (not committed)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--scale", default="10000,1000000", help="stored consumers; empty to skip")
    parser.add_argument("--only", default="sqlite,postgres", help="backends to run")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (make bench installs it with apt-get)")
    OUT.mkdir(parents=True, exist_ok=True)
    from app.cli import upgrade_database

    base = baseline(args.runs, args.seconds)
    backends = {}
    if "sqlite" in args.only:
        path = OUT / "bench.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        upgrade_database(f"sqlite:///{path}")
        backends["SQLite (in-memory limits per worker)"] = backend_scenarios(
            "sqlite", f"sqlite:///{path}", "memory://", args.runs, args.seconds)
    if "postgres" in args.only and (pg := postgres_url()) and (rd := redis_url()):
        upgrade_database(pg)
        backends["PostgreSQL + Redis"] = backend_scenarios("postgres", pg, rd, args.runs, args.seconds)
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
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "make bench" + ("" if len(sys.argv) == 1 else " # " + " ".join(sys.argv[1:])),
            "runs": args.runs, "seconds": args.seconds,
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.platform()}, Python "
                       f"{platform.python_version()}",
            "versions": f"{versions}, wrk {wrk_version}"}
    (OUT / "results.json").write_text(json.dumps({"baseline": base, "backends": backends,
                                                  "scale": scale, "meta": meta}, indent=2))
    (ROOT / "bench" / "RESULTS.md").write_text(report(base, backends, scale, meta))
    print((ROOT / "bench" / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
