// The peer for `make bench`: Better Auth with its anonymous plugin on better-sqlite3, served by
// Node's http module in N cluster processes (BENCH_PEER_PROCESSES, default 2). Its rate limiter is
// switched off (as measured in bench/RESULTS.md) and its CSRF origin check accepts the bench origin.
import cluster from "node:cluster";
import http from "node:http";
import Database from "better-sqlite3";
import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import { anonymous } from "better-auth/plugins/anonymous";

const port = Number(process.env.PORT || 3000);
const processes = Number(process.env.BENCH_PEER_PROCESSES || 2);
const file = process.env.BENCH_PEER_DB || "peer.sqlite3";
const origin = `http://127.0.0.1:${port}`;

function makeAuth() {
  const database = new Database(file);
  database.pragma("journal_mode = WAL");
  database.pragma("busy_timeout = 5000");
  return betterAuth({
    database,
    baseURL: origin,
    secret: "bench-peer-secret-" + "p".repeat(32),
    trustedOrigins: [origin],
    rateLimit: { enabled: false },
    telemetry: { enabled: false },
    plugins: [anonymous()],
  });
}

if (cluster.isPrimary) {
  const { runMigrations } = await getMigrations(makeAuth().options);
  await runMigrations();
  for (let i = 0; i < processes; i++) cluster.fork();
  cluster.on("exit", (worker, code) => { if (code) console.error(`worker ${worker.process.pid} exited ${code}`); });
  process.on("SIGTERM", () => { for (const id in cluster.workers) cluster.workers[id].kill(); process.exit(0); });
} else {
  const handler = toNodeHandler(makeAuth());
  http.createServer((req, res) => {
    if (req.url === "/healthz") { res.end("ok"); return; }
    handler(req, res);
  }).listen(port, "127.0.0.1");
}
