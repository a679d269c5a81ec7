"""`make profile`: where a gunicorn worker spends its CPU under the guest, refresh and queue
status loads.

Starts Usher (SQLite, `bench.run`'s workers: one sync worker per core), drives each scenario with
wrk as `make bench` does, and samples one worker with py-spy (`--gil`: only samples that hold
the GIL, i.e. CPU in Python). Writes bench/out/profile.md: the share of samples under each group
of frames (bench/PROFILE.md quotes it with the before/after figures of the optimizations)."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import (
    APP_SECRET,
    LUA,
    OUT,
    WORKERS,
    Gunicorn,
    Seeder,
    refresh_env,
    refresh_sessions,
    write_lines,
)

# Groups of frames, most specific first: a sample counts for the first group it is under.
GROUPS = [
    ("signing (PyJWT + Ed25519)", ("sign_pair",)),
    ("rate limit (limits storage)", ("RateLimits.hit",)),
    ("caller resolution (publishable key, cached ≤ 1 s; session liveness query)", ("resolve_key",)),
    ("queue state query", ("consumer_state",)),
    ("token verification (PyJWT + Ed25519)", ("TokenService.verify",)),
    ("write transaction (inserts/updates, commit, writer lock)", ("Database.write", "lock_session",
                                                                 "save_rotation", "insert_session")),
    ("request body parsing (webargs/marshmallow)", ("Parser.parse ", "_load_location_data", "Schema.load ")),
    ("response serialization (wire body, json.dumps; marshmallow where still used)",
     ("Schema.dump", "jsonify", "json_response")),
    ("access log", ("observability",)),
    ("connection checkout / teardown", ("Usher.reader", "Usher.teardown", "Engine.connect")),
    ("the rest: gunicorn, Flask, flask-smorest, the view itself (the baseline pays the first two)",
     ("SyncWorker", "Flask.")),
]


def group_of(stack: str) -> str:
    for name, needles in GROUPS:
        if any(needle in stack for needle in needles):
            return name
    return "other"


def profile(url: str, script: str, env: dict, seconds: int = 10) -> collections.Counter:
    raw = Path(tempfile.mkstemp(suffix=".raw")[1])
    load = subprocess.Popen(["wrk", "-t2", "-c32", f"-d{seconds + 4}s", "-s", str(LUA / script), url],
                            env={**os.environ, **env, "BENCH_LUA": str(LUA), "BENCH_THREADS": "2"},
                            stdout=subprocess.DEVNULL)
    time.sleep(2)
    worker = subprocess.run(["ps", "-o", "pid=", "--ppid", str(SERVER.process.pid)], capture_output=True,
                            text=True, check=True).stdout.split()[0]
    subprocess.run([str(Path(sys.executable).parent / "py-spy"), "record", "-p", worker, "-d", str(seconds),
                    "-r", "200", "--gil", "-f", "raw", "-o", str(raw)], capture_output=True, check=True)
    load.wait()
    counts: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack:
            counts[group_of(stack)] += int(n)
    raw.unlink()
    return counts


def main() -> None:
    global SERVER
    OUT.mkdir(parents=True, exist_ok=True)
    from app.cli import upgrade_database

    path = OUT / "profile.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    upgrade_database(url)
    seeder = Seeder(url, "memory://")
    env = {"DATABASE_URL": url, "APP_SECRET": APP_SECRET, "RATELIMIT_STORAGE_URI": "memory://",
           "ISSUER": "http://usher.bench", "GUEST_RATE_LIMIT": "100000000 per minute"}
    sections = []
    with Gunicorn("wsgi:app", env, "usher-profile") as SERVER:
        guest = profile(SERVER.url + "/api/v1/auth/guest", "guest.lua",
                        {"USHER_PK": seeder.keys["publishableKey"]})
        refresh_sessions(seeder, "profile")(None)
        refresh = profile(SERVER.url, "pool.lua", refresh_env(seeder, "profile"))
        queue_id, tokens = seeder.queue_tokens(64)
        status = profile(SERVER.url, "pool.lua", {"USHER_PK": seeder.keys["publishableKey"],
                                                  "BENCH_FILE": write_lines("profile-access", tokens),
                                                  "BENCH_KIND": "status",
                                                  "BENCH_PATH": f"/api/v1/queues/{queue_id}/status"})
    for name, counts in (("guest session", guest), ("refresh", refresh), ("queue status", status)):
        total = sum(counts.values())
        sections += [f"## {name} ({total} samples)", "", "| where the worker's CPU went | share |", "|---|---|"]
        sections += [f"| {group} | {n / total:.0%} |" for group, n in counts.most_common()]
        sections.append("")
    seeder.close()
    text = "\n".join([(f"# Profile of one gunicorn worker (py-spy --gil, SQLite, {WORKERS} sync workers, wrk 32 "
                      "connections)"), "",
                      ("Made by `make profile` (`bench/profile.py`). Each sample counts for the first group "
                       "(most specific first) whose frames it is under."), "", *sections])
    (OUT / "profile.md").write_text(text)
    print(text)


SERVER: Gunicorn
if __name__ == "__main__":
    main()
