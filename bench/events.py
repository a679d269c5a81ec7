"""Guest session throughput with and without a webhook listener, and against the tree before
events existed: `python -m bench.events --baseline-tree DIR [--pg URL --redis URL]`.

Three configurations, run in turn (rounds interleave them so that the machine's noise falls on
all alike), each a real gunicorn (4 sync workers) driven by wrk (32 connections):
- `before`: the baseline tree (a clone of main without this work), no events at all;
- `no listener`: this tree, no webhook endpoint (the hot path must not change);
- `listener`: this tree, an endpoint listening to `session.created`, a loopback receiver
  answering 200, deliveries on the job engine (in-process on SQLite; a `flask --app wsgi worker`
  on Redis with PostgreSQL), which drains before the next run: the request path and the
  deliveries share the machine's two cores;
- `listener, no worker` (PostgreSQL + Redis only): the same, with no worker running during the
  measurement, so it shows what a listener costs the request itself (the outbox rows and the
  hand-over to Redis); the next run's worker drains the backlog before measuring.
Writes bench/EVENTS.md and bench/out/events.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.run import APP_SECRET, OUT, ROOT, free_port, wrk

SECONDS, RUNS = 10, 3
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(master: int) -> float:
    """User + system CPU time of gunicorn's workers (the master's children), from /proc. Less
    sensitive than req/s to what else the machine runs: it is the work one request costs."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:  # ppid
            total += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return total


class Receiver:
    def __init__(self):
        self.count = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _flask(tree: Path, env: dict, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=tree, env=env,
                          capture_output=True, text=True, check=True).stdout


def _call(method: str, url: str, headers: dict, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={**headers, "Content-Type":
                                                                             "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
        return json.loads(raw) if raw else {}


class Config:
    def __init__(self, name: str, tree: Path, database_url: str, redis_url: str | None, listener: bool,
                 receiver: Receiver | None, worker: bool = True):
        self.name, self.tree, self.listener, self.receiver = name, tree, listener, receiver
        self.run_worker = worker
        self.env = {**os.environ, "DATABASE_URL": database_url, "APP_SECRET": APP_SECRET, "WEB_CONCURRENCY": "4",
                    "GUNICORN_WORKER_CLASS": "sync", "GUEST_RATE_LIMIT": "10000000 per minute",
                    "ISSUER": "http://usher.bench", "PYTHONDONTWRITEBYTECODE": "1"}
        self.env.pop("JOB_BROKER_URL", None)
        if redis_url:
            self.env["RATELIMIT_STORAGE_URI"] = redis_url
            if listener:
                self.env["JOB_BROKER_URL"] = redis_url
        self.results: list[dict] = []

    def __enter__(self):
        _flask(self.tree, self.env, "db", "upgrade")
        created = _flask(self.tree, self.env, "org", "create", "--name", self.name, "--json")
        self.keys = json.loads(created)["keys"]["test"]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(OUT / f"events-{self.name.replace(',', '').replace(' ', '-')}.log", "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                                        cwd=self.tree, env={**self.env, "BIND": f"127.0.0.1:{self.port}"},
                                        stdout=log, stderr=subprocess.STDOUT)
        self.worker = None
        for _ in range(150):
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        if self.listener:
            _call("POST", self.url + "/api/v1/webhook-endpoints", {"Authorization": f"Bearer {self.keys['secretKey']}"},
                  {"url": self.receiver.url, "events": ["session.created"]})
            if "JOB_BROKER_URL" in self.env and self.run_worker:
                self.worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
                                               cwd=self.tree, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wrk(self.url + "/api/v1/auth/guest", "guest.lua", 3, {"USHER_PK": self.keys["publishableKey"]})  # warm-up
        self.drain()
        return self

    def measure(self) -> dict:
        before = cpu_seconds(self.process.pid)
        result = wrk(self.url + "/api/v1/auth/guest", "guest.lua", SECONDS, {"USHER_PK": self.keys["publishableKey"]})
        result["cpu_ms"] = (cpu_seconds(self.process.pid) - before) * 1000 / max(result["requests"], 1)
        self.results.append(result)
        self.drain()
        return result

    def drain(self, limit: float = 180) -> None:
        """Wait until the receiver stops getting deliveries (the engine caught up)."""
        if not self.listener or not self.run_worker:
            return
        deadline, last = time.monotonic() + limit, -1
        while time.monotonic() < deadline and self.receiver.count != last:
            last = self.receiver.count
            time.sleep(2)

    def __exit__(self, *exc):
        for process in (self.worker, self.process):
            if process is not None:
                process.terminate()
                process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline-tree", required=True, type=Path)
    parser.add_argument("--pg")
    parser.add_argument("--redis")
    parser.add_argument("--rounds", type=int, default=RUNS)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    receiver = Receiver()
    backends = [("SQLite", None, None)]
    if args.pg and args.redis:
        backends.append(("PostgreSQL + Redis", args.pg, args.redis))
    report: dict = {}
    if args.pg:  # one schema per configuration in the given database (the trees' migrations differ)
        import sqlalchemy

        engine = sqlalchemy.create_engine(args.pg)
        with engine.begin() as connection:
            for slug in ("before", "no_listener", "listener_no_worker", "listener"):
                connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS bench_{slug} CASCADE")
                connection.exec_driver_sql(f"CREATE SCHEMA bench_{slug}")
        engine.dispose()
    for backend, pg, redis_url in backends:
        configs = []
        variants = [("before", args.baseline_tree, False, True), ("no listener", ROOT, False, True)]
        if pg:
            variants.append(("listener, no worker", ROOT, True, False))
        variants.append(("listener", ROOT, True, True))
        for name, tree, listener, worker in variants:
            slug = name.replace(",", "").replace(" ", "_")
            url = f"{pg}?options=-csearch_path%3Dbench_{slug}" if pg else f"sqlite:///{OUT / f'events-{slug}.sqlite3'}"
            if not pg:
                for suffix in ("", "-wal", "-shm", ".writer-lock"):
                    Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
            configs.append(Config(name, tree, url, redis_url, listener, receiver, worker))
        for _ in range(args.rounds):
            for config in configs:
                with config:
                    result = config.measure()
                    print(backend, config.name, round(result["rps"]), result["p50"], result["p99"],
                          result["non2xx"], round(result["cpu_ms"], 3), flush=True)
        report[backend] = {c.name: {"rps_median": statistics.median(r["rps"] for r in c.results),
                                    "rps_runs": [round(r["rps"]) for r in c.results],
                                    "p50_ms_median": statistics.median(r["p50"] for r in c.results),
                                    "p99_ms_median": statistics.median(r["p99"] for r in c.results),
                                    "cpu_ms_per_request_median": statistics.median(r["cpu_ms"] for r in c.results),
                                    "cpu_ms_runs": [round(r["cpu_ms"], 2) for r in c.results],
                                    "non2xx": sum(r["non2xx"] for r in c.results)} for c in configs}
    report["deliveries_received"] = receiver.count
    (OUT / "events.json").write_text(json.dumps(report, indent=2))
    lines = ["# Guest sessions with and without a webhook listener", "",
             (f"`python -m bench.events` on {time.strftime('%Y-%m-%d')}: gunicorn 4 sync workers, wrk 32 connections, "
             f"{SECONDS} s per run, configurations interleaved ({args.rounds} rounds) on a shared 2-core machine."),
             "", ("CPU ms/request: user + system time of the gunicorn workers during the run, divided by the "
             "requests (in-process deliveries included on SQLite); it moves far less than req/s with the "
             "machine's other load."), "",
             ("| backend | configuration | req/s (median) | req/s runs | CPU ms/request (median) | CPU runs | "
             "p50 ms | p99 ms | non-2xx |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for backend, configs in report.items():
        if backend == "deliveries_received":
            continue
        for name, figures in configs.items():
            lines.append(f"| {backend} | {name} | {figures['rps_median']:.0f} | {figures['rps_runs']} | "
                         f"{figures['cpu_ms_per_request_median']:.2f} | {figures['cpu_ms_runs']} | "
                         f"{figures['p50_ms_median']:.2f} | {figures['p99_ms_median']:.2f} | {figures['non2xx']} |")
    lines += ["", f"Deliveries received by the loopback receiver over all listener runs: {receiver.count}.", ""]
    (ROOT / "bench" / "EVENTS.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
