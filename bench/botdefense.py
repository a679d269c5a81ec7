"""`make bench`'s bot-defense part (`python -m bench.botdefense` alone): what ALTCHA costs.

- The server: guest sign-in with a valid ALTCHA proof in `X-Usher-Challenge` (verified, then
  remembered once in the limit storage) against guest sign-in with bot defense off, on the same
  gunicorn, in rounds (bench.run's method). Proofs are solved beforehand at the smallest fixed
  complexity, so the load measures verification, not solving.
- The client: how long solving takes at each "auto" complexity step, in Node.js with WebCrypto
  (`crypto.subtle.digest`, what a browser and the SDK use) and with Node's native hash (what a
  bot would use), medians over solved challenges made by Usher.

Writes its section into bench/RESULTS.md (between the markers) and bench/out/botdefense.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import statistics
import subprocess
from pathlib import Path

from bench.run import APP_SECRET, OUT, ROOT, WORKERS, Gunicorn, Scenario, rounds, usher_env, write_lines

STEPS = [50_000, 100_000, 200_000, 400_000, 800_000, 1_600_000, 3_200_000, 5_000_000]
START, END = "<!-- bot defense: bench/botdefense.py -->", "<!-- /bot defense -->"
SOLVER = r"""
const { webcrypto, createHash } = require("node:crypto");
const [challenge, salt, maxnumber, how] = process.argv.slice(1);
const enc = new TextEncoder();
const hex = (buf) => Buffer.from(buf).toString("hex");
(async () => {
  const started = performance.now();
  for (let n = 0; n <= Number(maxnumber); n++) {
    const digest = how === "webcrypto" ? hex(await webcrypto.subtle.digest("SHA-256", enc.encode(salt + n)))
                                       : createHash("sha256").update(salt + n).digest("hex");
    if (digest === challenge) { console.log(JSON.stringify({ n, ms: performance.now() - started })); return; }
  }
  console.log(JSON.stringify({ n: null, ms: performance.now() - started }));
})();
"""


class Tenants:
    """Two organizations on one database: one with bot defense off, one with ALTCHA at 1,000."""

    def __init__(self, database_url: str, limits_url: str):
        from app import create_app
        from app.services.orgs import create_organization

        self.app = create_app({"DATABASE_URL": database_url, "APP_SECRET": APP_SECRET,
                               "RATELIMIT_STORAGE_URI": limits_url, "ISSUER": "http://usher.bench"})
        self.usher = self.app.extensions["usher"]
        with self.usher.db.transaction() as session:
            self.off = create_organization(session, APP_SECRET, "Bench off")
            self.altcha = create_organization(session, APP_SECRET, "Bench ALTCHA")
        client = self.app.test_client()
        response = client.patch("/api/v1/settings", json={"botDefense": "altcha", "altchaComplexity": 1000},
                                headers={"Authorization": f"Bearer {self.altcha['keys']['test']['secretKey']}"})
        assert response.status_code == 200, response.json

    def challenge(self, complexity: int | None = None) -> dict:
        from app.botdefense import Attempt
        from app.security.callers import organization_snapshot

        with self.usher.db.engine.connect() as connection:
            settings = organization_snapshot(connection, self.altcha["organizationId"], "test")
        if complexity is not None:
            settings = settings.__class__(**{**settings.__dict__, "altcha_complexity": str(complexity)})
        attempt = Attempt(self.altcha["organizationId"], "test", settings, "127.0.0.1", self.usher.clock())
        return self.usher.bot_defense.challenge(attempt)["challenge"]

    def proofs(self, count: int) -> list[str]:
        from altcha import solve_challenge_v1

        out = []
        for _ in range(count):
            issued = self.challenge()
            solution = solve_challenge_v1(issued["challenge"], issued["salt"], issued["algorithm"], issued["maxnumber"])
            payload = {key: issued[key] for key in ("algorithm", "challenge", "salt", "signature")}
            out.append(base64.b64encode(json.dumps({**payload, "number": solution.number}).encode()).decode())
        return out


def server_cost(tenants: Tenants, database_url: str, limits_url: str, runs: int, seconds: int) -> dict:
    def proofs(rate):
        count = 3000 if rate is None else int(rate * seconds * 1.5) + 500
        write_lines("botdefense-proofs", tenants.proofs(count))

    with Gunicorn("wsgi:app", usher_env(database_url, limits_url), "usher-botdefense") as server:
        scenarios = [
            Scenario("guest, bot defense off", server.url + "/api/v1/auth/guest", "guest.lua",
                     {"USHER_PK": tenants.off["keys"]["test"]["publishableKey"]}),
            Scenario("guest with a valid ALTCHA proof", server.url, "pool.lua", {
                "USHER_PK": tenants.altcha["keys"]["test"]["publishableKey"], "BENCH_KIND": "challenge",
                "BENCH_FILE": str(OUT / "botdefense-proofs.txt"), "BENCH_PATH": "/api/v1/auth/guest"}, proofs)]
        return rounds(scenarios, runs, seconds)


def solve_times(tenants: Tenants, per_step: int, largest_measured: int) -> list[dict]:
    rows = []
    for step in STEPS:
        row: dict = {"maxnumber": step}
        for how in ("webcrypto", "native"):
            if how == "webcrypto" and step > largest_measured:
                continue
            times = []
            for _ in range(per_step):
                issued = tenants.challenge(step)
                result = subprocess.run(["node", "-e", SOLVER, issued["challenge"], issued["salt"],
                                         str(issued["maxnumber"]), how], capture_output=True, text=True, check=True)
                found = json.loads(result.stdout)
                assert found["n"] is not None
                times.append(found["ms"])
            row[how] = statistics.median(times)
        rows.append(row)
    return rows


def section(cost: dict, times: list[dict], meta: str) -> str:
    off, on = cost["guest, bot defense off"], cost["guest with a valid ALTCHA proof"]
    lines = [START, "## Bot defense: what ALTCHA costs", "", meta, "",
             "Server: guest sign-in on one gunicorn (`gunicorn.conf.py`), the proof of each request solved "
             "beforehand (single use: verified, then remembered in the limit storage).", "",
             "| scenario | req/s | p50 ms | p99 ms | errors | vs off |", "|---|---|---|---|---|---|"]
    for name, r in cost.items():
        lines.append(f"| {name} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
                     f"{r['non2xx'] + r['socket_errors']} | {r['rps'] / off['rps']:.0%} |")
    lines += ["", f"Verification costs {(1 / on['rps'] - 1 / off['rps']) * 1000 * int(WORKERS):.2f} ms of a "
              "worker per guest (the difference of the inverse throughputs times the workers).", "",
              "Client: time to solve a challenge Usher made, at each `\"auto\"` step (median; the number is "
              "random, so a solve takes about half of the worst case). WebCrypto (`crypto.subtle.digest`, as "
              "a browser and the SDK hash) and Node's native hash (as a bot would) on one core of this machine; "
              "a phone is several times slower than this machine.", "",
              "| maxnumber | mode's protected requests a minute | WebCrypto ms | native ms |", "|---|---|---|---|"]
    for row in times:
        rate = "under 1,200" if row["maxnumber"] == 50_000 else f"{row['maxnumber'] // 50_000 * 600:,}+"
        web = f"{row['webcrypto']:.0f}" if "webcrypto" in row else "–"
        lines.append(f"| {row['maxnumber']:,} | {rate} | {web} | {row['native']:.0f} |")
    return "\n".join([*lines, END]) + "\n"


def write_section(text: str) -> None:
    results = ROOT / "bench" / "RESULTS.md"
    current = results.read_text() if results.exists() else ""
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END) + "\n?", re.S)
    results.write_text(pattern.sub(lambda _: text, current) if pattern.search(current) else current + "\n" + text)


def run(database_url: str, limits_url: str, runs: int, seconds: int, per_step: int, largest_measured: int) -> str:
    from datetime import UTC, datetime

    tenants = Tenants(database_url, limits_url)
    cost = server_cost(tenants, database_url, limits_url, runs, seconds)
    times = solve_times(tenants, per_step, largest_measured)
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    meta = (f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M UTC} by `python -m bench.botdefense` (also part of "
            f"`make bench`): {seconds} s × {runs} rounds, wrk on loopback, {database_url.split(':')[0]} with "
            f"{limits_url.split(':')[0]} limits, Node.js {node}.")
    (OUT / "botdefense.json").write_text(json.dumps({"server": cost, "client": times}, indent=2))
    text = section(cost, times, meta)
    write_section(text)
    return text


def main() -> None:
    from app.cli import upgrade_database

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--per-step", type=int, default=5, help="challenges solved at each complexity step")
    parser.add_argument("--webcrypto-up-to", type=int, default=800_000,
                        help="largest step solved with WebCrypto (slow: one await per hash)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "botdefense.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    upgrade_database(f"sqlite:///{path}")
    print(run(f"sqlite:///{path}", "memory://", args.runs, args.seconds, args.per_step, args.webcrypto_up_to))


if __name__ == "__main__":
    main()
