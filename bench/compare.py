"""`python -m bench.compare REV`: this tree's Usher against an earlier revision's, in the same
rounds, on the same database and gunicorn settings: the before/after figures of
bench/PROFILE.md. REV is checked out into a git worktree (bench/out/compare-REV) and served
from there; both serve the same seeded database (the schema must be the same)."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from pathlib import Path

from bench.run import (
    OUT,
    ROOT,
    Gunicorn,
    Scenario,
    Seeder,
    otp_scenario,
    postgres_url,
    redis_url,
    refresh_env,
    refresh_sessions,
    rounds,
    usher_env,
    write_lines,
)


def worktree(rev: str) -> Path:
    path = OUT / f"compare-{rev}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT, check=True)
    return path


def scenarios(label: str, server: Gunicorn, seeder: Seeder, queue_id: str, tokens: str,
              seconds: int) -> list[Scenario]:
    pk = seeder.keys["publishableKey"]
    return [Scenario(f"{label} guest session", server.url + "/api/v1/auth/guest", "guest.lua", {"USHER_PK": pk}),
            Scenario(f"{label} refresh", server.url, "pool.lua", refresh_env(seeder, label),
                     refresh_sessions(seeder, label)),
            Scenario(f"{label} queue status", server.url, "pool.lua", {
                "USHER_PK": pk, "BENCH_FILE": tokens, "BENCH_KIND": "status",
                "BENCH_PATH": f"/api/v1/queues/{queue_id}/status"}),
            otp_scenario(f"{label} OTP verify", f"compare-{label}", seeder, server, seconds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rev")
    parser.add_argument("--workers", default="2", help="gunicorn sync workers, for both")
    parser.add_argument("--before-workers", help="the earlier revision's workers, if not --workers (its own default)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    from app.cli import upgrade_database

    old = worktree(args.rev)
    if args.backend == "sqlite":
        path = OUT / "compare.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url, limits = f"sqlite:///{path}", "memory://"
    else:
        url, limits = postgres_url(), redis_url()
        if not (url and limits):
            sys.exit("PostgreSQL or Redis is not answering")
    upgrade_database(url)
    seeder = Seeder(url, limits)
    queue_id, access = seeder.queue_tokens(64)
    tokens = write_lines("compare-access", access)
    env = {**usher_env(url, limits), "WEB_CONCURRENCY": args.workers, "GUNICORN_WORKER_CLASS": "sync"}
    with contextlib.ExitStack() as stack:
        before = Gunicorn("wsgi:app", {**env, "WEB_CONCURRENCY": args.before_workers or args.workers},
                          "compare-before")
        before.cwd = old
        now = Gunicorn("wsgi:app", env, "compare-now")
        pairs = zip(scenarios("before", stack.enter_context(before), seeder, queue_id, tokens, args.seconds),
                    scenarios("now", stack.enter_context(now), seeder, queue_id, tokens, args.seconds), strict=True)
        # Before and now of one scenario back to back: what a scenario leaves behind (PostgreSQL's
        # checkpoints and vacuum after a write load) falls on both alike.
        found = rounds([scenario for pair in pairs for scenario in pair], args.runs, args.seconds)
    seeder.close()
    print(f"{args.backend}, {args.before_workers or args.workers} sync workers before, {args.workers} now, "
          f"{args.runs} rounds of {args.seconds} s; before = {args.rev}")
    print("| scenario | before req/s | now req/s | now/before | before p99 ms | now p99 ms |")
    print("|---|---|---|---|---|---|")
    for name in ("guest session", "refresh", "queue status", "OTP verify"):
        b, n = found[f"before {name}"], found[f"now {name}"]
        print(f"| {name} | {b['rps']:.0f} | {n['rps']:.0f} | {n['rps'] / b['rps']:.2f} × | {b['p99']:.1f} | "
              f"{n['p99']:.1f} |")


if __name__ == "__main__":
    main()
