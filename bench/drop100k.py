"""`python -m bench.drop100k [--before REV]`: the drop with a queue already holding 100,000
entries (bulk-inserted), on PostgreSQL + Redis, gunicorn (2 sync workers) on loopback.

Two loads per server, in rounds (with `--before`, the earlier revision's server and this tree's
run back to back in each round, on the same database, each on a queue of its own):

- journeys (bench/lua/drop100k.lua): 32 shoppers, one after another on each connection: a
  guest session, enter at the back of the queue, then status polls over a 300 s waiting window
  of the shopper's time, waiting what each answer's `pollAfter` says (5 s where there is none);
  journeys/s, requests per journey, status p50/p99;
- status only (bench/lua/pool.lua): 64 shoppers at places 100,001-100,064 polling flat out;
  req/s, p50/p99, and PostgreSQL CPU per status: the CPU time (/proc/PID/stat) of the backends
  serving the database, over the run, divided by the requests.

The database is BENCH_DATABASE_URL (default: the bench's usher_bench, emptied first); Redis db 14.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from bench.run import (
    LUA,
    OUT,
    Gunicorn,
    Seeder,
    postgres_url,
    redis_url,
    usher_env,
    write_lines,
    wrk,
)

SHOPPERS = 32
WINDOW, FIXED_POLL = 300, 5  # as bench/lua/drop100k.lua's defaults


def reset(url: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def bulk_queue(seeder: Seeder, total: int) -> str:
    """A queue with `total` guests queued (one INSERT per table), counted as the migration does."""
    from sqlalchemy import create_engine, text

    from app.stores.queues import GenericQueueStore

    client = seeder.app.test_client()
    secret = {"Authorization": f"Bearer {seeder.keys['secretKey']}"}
    experience = client.post("/api/v1/experiences", json={"name": "Drop"}, headers=secret).json
    queue = client.post("/api/v1/queues", json={"experienceId": experience["id"], "name": "Main"}, headers=secret).json
    engine = create_engine(seeder.usher.db.url)
    values = {"prefix": f"guest_bulk{queue['id'][-8:]}_", "org": seeder.org_id, "queue": queue["id"],
              "last": total - 1}
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO consumers (id, organization_id, mode, created_at) "
                                "SELECT :prefix || g, :org, 'test', now() FROM generate_series(0, :last) AS g"), values)
        connection.execute(text("INSERT INTO queue_entries (queue_id, consumer_id, sequence, status, entered_at) "
                                "SELECT :queue, :prefix || g, g, 'QUEUED', now() FROM generate_series(0, :last) AS g"),
                           values)
        connection.execute(text("UPDATE queues SET next_sequence = :last + 1 WHERE id = :queue"), values)
        GenericQueueStore().recount(connection, queue["id"])
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return queue["id"]


def back_of_queue_tokens(seeder: Seeder, queue_id: str, count: int) -> list[str]:
    guests = seeder.guests(count)
    client = seeder.app.test_client()
    for guest in guests:
        client.post(f"/api/v1/queues/{queue_id}/enter",
                    headers={"X-Publishable-Key": seeder.keys["publishableKey"],
                             "Authorization": f"Bearer {guest['access']}"})
    return [g["access"] for g in guests]


# -- PostgreSQL's CPU ------------------------------------------------------------------------------
def backends(url: str) -> list[int]:
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        return [pid for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                               "AND pid <> pg_backend_pid()")]


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            found[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return found


def connections_per_worker(server: Gunicorn) -> list[int]:
    """PostgreSQL connections each gunicorn worker holds now (ss: the owning process of each)."""
    workers = [int(p) for p in Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
               .read_text().split()]
    out = subprocess.run(["ss", "-Htnp", "dst", "127.0.0.1:5432"], capture_output=True, text=True, check=True).stdout
    return [len(re.findall(rf"pid={pid},", out)) for pid in workers]


# -- the loads -------------------------------------------------------------------------------------
def journeys(url: str, pk: str, queue_id: str, seconds: int) -> dict:
    folder = OUT / "drop100k"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    command = ["wrk", f"-t{SHOPPERS}", f"-c{SHOPPERS}", f"-d{seconds}s", "-s", str(LUA / "drop100k.lua"), url]
    result = subprocess.run(command, capture_output=True, text=True, check=True, env={
        **os.environ, "USHER_PK": pk, "BENCH_QUEUE": queue_id, "BENCH_OUT": str(folder), "BENCH_LUA": str(LUA)})
    duration = float(re.search(r"requests in ([\d.]+)s", result.stdout).group(1))
    requests = int(re.search(r"(\d+) requests in", result.stdout).group(1))
    done, errors, latencies, completed = 0, 0, {}, 0
    for path in folder.glob("drop-*.txt"):
        lines = path.read_text().splitlines()
        # Requests of completed journeys: this shopper's up to its last "journey" line.
        completed += sum(1 for line in lines[:len(lines) - lines[::-1].index("journey")] if " " in line
                         and not line.startswith("error ")) if "journey" in lines else 0
        for line in lines:
            if line == "journey":
                done += 1
            elif line.startswith("error "):
                errors += 1
            else:
                name, _, ms = line.rpartition(" ")
                latencies.setdefault(name, []).append(float(ms))
    status = sorted(latencies.get("status", [0.0]))
    return {"completed_per_second": done / duration, "journeys": done, "requests": requests,
            "requests_per_second": requests / duration,
            # Measured on the journeys this run completed: all but the ones cut off at its end.
            "requests_per_journey": completed / done if done else None,
            "errors": errors,
            "status_p50": status[len(status) // 2], "status_p99": status[min(len(status) - 1, int(len(status) * 0.99))]}


def status_only(server: Gunicorn, db_url: str, pk: str, queue_id: str, tokens: str, seconds: int) -> dict:
    env = {"USHER_PK": pk, "BENCH_FILE": tokens, "BENCH_KIND": "status",
           "BENCH_PATH": f"/api/v1/queues/{queue_id}/status"}
    wrk(server.url, "pool.lua", 1, env)  # every worker's pool connected before the count starts
    pids = backends(db_url)
    before = cpu_seconds(pids)
    result = wrk(server.url, "pool.lua", seconds, env)
    after = cpu_seconds(pids)
    spent = sum(after[p] - before[p] for p in after if p in before)
    return {**result, "pg_cpu_ms_per_status": spent * 1000 / result["requests"], "pg_cpu_seconds": spent,
            "backends": len(pids)}


def worktree(rev: str) -> Path:
    path = OUT / f"compare-{rev}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=OUT.parent.parent, check=True)
    return path


def measure(url: str, limits: str, before: str | None, runs: int, seconds: int, status_seconds: int,
            queued: int) -> dict:
    """Both loads, in rounds, for this tree (and `before`, back to back); the summary per label."""
    from app.cli import upgrade_database

    reset(url)
    upgrade_database(url)
    seeder = Seeder(url, limits)
    labels = (["before"] if before else []) + ["after"]
    setup = {}
    for label in labels:
        queue_id = bulk_queue(seeder, queued)
        setup[label] = (queue_id, write_lines(f"drop100k-{label}", back_of_queue_tokens(seeder, queue_id, 64)))
    env = {**usher_env(url, limits), "WEB_CONCURRENCY": "2", "GUNICORN_WORKER_CLASS": "sync"}
    pk = seeder.keys["publishableKey"]
    found: dict[str, dict[str, list]] = {label: {"journeys": [], "status": []} for label in labels}
    held: dict[str, list[int]] = {}
    with contextlib.ExitStack() as stack:
        servers = {}
        for label in labels:
            server = Gunicorn("wsgi:app", env, f"drop100k-{label}")
            if label == "before" and before:
                server.cwd = worktree(before)
            servers[label] = stack.enter_context(server)
        for label in labels:  # warm-up
            journeys(servers[label].url, pk, setup[label][0], 3)
        for _ in range(runs):
            for label in labels:  # before and after back to back: the shared machine's drift falls on both
                found[label]["journeys"].append(journeys(servers[label].url, pk, setup[label][0], seconds))
                found[label]["status"].append(status_only(servers[label], url, pk, *setup[label], status_seconds))
        for label in labels:
            held[label] = connections_per_worker(servers[label])
    seeder.close()
    summary = {}
    for label in labels:
        j, s = found[label]["journeys"], found[label]["status"]
        measured = [r["requests_per_journey"] for r in j if r["requests_per_journey"]]
        # With no journey completed (the long ones of a flat 5 s poll), the flat rule's count.
        per_journey = statistics.median(measured) if measured else 2 + WINDOW // FIXED_POLL
        if not measured and label == "after":
            per_journey = float("nan")  # too short a run for this tree's journeys: say so, guess nothing
        # Steady state: the request rate over the requests a journey takes (a run of a few seconds
        # completes few of the long journeys; their requests count all the same).
        rates = [r["requests_per_second"] / per_journey for r in j]
        summary[label] = {
            "journeys_per_second": statistics.median(rates), "journeys_runs": [round(x, 1) for x in rates],
            "completed": sum(r["journeys"] for r in j),
            "requests_per_journey": per_journey,
            "journey_status_p50": statistics.median(r["status_p50"] for r in j),
            "journey_status_p99": statistics.median(r["status_p99"] for r in j),
            "errors": sum(r["errors"] for r in j) + sum(r["non2xx"] + r["socket_errors"] for r in s),
            "status_rps": statistics.median(r["rps"] for r in s),
            "status_p50": statistics.median(r["p50"] for r in s), "status_p99": statistics.median(r["p99"] for r in s),
            "pg_cpu_ms_per_status": statistics.median(r["pg_cpu_ms_per_status"] for r in s),
            "pg_cpu_runs": [round(r["pg_cpu_ms_per_status"], 3) for r in s],
            "connections_per_worker": held[label]}
    result = {"args": {"before": before, "runs": runs, "seconds": seconds, "status_seconds": status_seconds,
                       "queued": queued}, "summary": summary, "raw": found}
    (OUT / "drop100k.json").write_text(json.dumps(result, indent=2))
    return result


def table(result: dict) -> list[str]:
    args = result["args"]
    lines = [f"{args['queued']:,} queued; {args['runs']} rounds; journeys {args['seconds']} s, status only "
             f"{args['status_seconds']} s" + (f"; before = {args['before']}" if args["before"] else ""), "",
             "| | journeys/s (runs) | completed | requests per journey | status p50 ms | status p99 ms | "
             "status-only req/s | status-only p50 / p99 ms | PostgreSQL CPU ms per status (runs) | errors | "
             "PostgreSQL connections per worker |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in result["summary"].items():
        lines.append(f"| {label} | {r['journeys_per_second']:.1f} ({', '.join(map(str, r['journeys_runs']))}) | "
                     f"{r['completed']} | {r['requests_per_journey']:.1f} | {r['journey_status_p50']:.1f} | "
                     f"{r['journey_status_p99']:.1f} | {r['status_rps']:.0f} | "
                     f"{r['status_p50']:.1f} / {r['status_p99']:.1f} | "
                     f"{r['pg_cpu_ms_per_status']:.3f} ({', '.join(map(str, r['pg_cpu_runs']))}) | {r['errors']} | "
                     f"{', '.join(map(str, r['connections_per_worker']))} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", help="an earlier revision, served from a git worktree in the same rounds")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=15, help="of each journeys run")
    parser.add_argument("--status-seconds", type=int, default=8)
    parser.add_argument("--queued", type=int, default=100_000)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    url = os.environ.get("BENCH_DATABASE_URL") or postgres_url()
    limits = redis_url()
    if not (url and limits):
        sys.exit("PostgreSQL or Redis is not answering")
    print("\n".join(table(measure(url, limits, args.before, args.runs, args.seconds, args.status_seconds,
                                  args.queued))))


if __name__ == "__main__":
    main()
