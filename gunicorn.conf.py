"""gunicorn settings; BIND and WEB_CONCURRENCY (and GUNICORN_* below) apply.

In-memory rate limits live in one process, so with `RATELIMIT_STORAGE_URI=memory://` (the
development default) a single gthread worker serves, unless WEB_CONCURRENCY says otherwise.
With Redis (production) several sync workers share the limits: one per core by default, the
model `make bench` measured best on loopback (2 sync workers beat 3, 4 and 6, and gthread with
keep-alive, directly and behind nginx; bench/PROFILE.md). With the database across a network,
more workers can hide its round trips: raise WEB_CONCURRENCY and measure.
"""

import multiprocessing
import os

from gunicorn.glogging import Logger

from app.observability import printable

bind = os.environ.get("BIND", "127.0.0.1:8000")
_memory_limits = os.environ.get("RATELIMIT_STORAGE_URI", "memory://").startswith("memory://")
if "WEB_CONCURRENCY" in os.environ or not _memory_limits:
    workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
    worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
    threads = int(os.environ.get("GUNICORN_THREADS", "1"))
else:
    workers = 1
    worker_class = "gthread"
    threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# The longest request line gunicorn takes (its maximum): every documented query parameter at
# its maximum length, percent-encoded, must reach the app and get a JSON answer (fuzzer finding:
# at gunicorn's default of 4094 a long query got gunicorn's own HTML 414). nginx's default
# large_client_header_buffers (8k) matches.
limit_request_line = 8190
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
accesslog = os.environ.get("GUNICORN_ACCESSLOG")
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
# Never put query strings (they could carry a credential) into gunicorn's access log.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'


class EscapingLogger(Logger):
    """gunicorn's access log with the client's method and (decoded) path escaped as Usher's own
    `usher.access` line is: one request, one line."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name in ("m", "U"):
            atoms[name] = printable(str(atoms.get(name) or "-"))
        return atoms


logger_class = EscapingLogger
# Metrics (operations contract, "Observability"): the Prometheus client's multiprocess mode needs
# a directory that every worker of THIS instance writes to and nobody else does. Set here, before
# any worker imports the client: a fresh private directory per master (removed at exit), or the
# operator's PROMETHEUS_MULTIPROC_DIR, emptied at start (files of an earlier run would be summed).
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(_metrics_dir, mode=0o700, exist_ok=True)
    for _name in os.listdir(_metrics_dir):
        if _name.endswith(".db"):
            os.unlink(os.path.join(_metrics_dir, _name))
    _own_metrics_dir = False
else:
    import tempfile

    _metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="usher-metrics-")
    _own_metrics_dir = True


def child_exit(server, worker):
    """A worker is gone: its live gauges stop counting (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def when_ready(server):
    """METRICS_BIND set: serve /metrics from the master on that separate listener (the main port
    then answers 404 there), summing every worker's files."""
    metrics_bind = os.environ.get("METRICS_BIND")
    if not metrics_bind:
        return
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from app.config import Settings
    from app.metrics import Metrics, SharedState, serve_metrics_wsgi
    from app.ratelimit import RateLimits, build_storage

    settings = Settings.load()
    # No pool: workers forked later must not inherit an open database connection of the master.
    engine = create_engine(settings.database_url, poolclass=NullPool)
    limits = RateLimits(build_storage(settings.ratelimit_storage_uri))
    shared = SharedState(lambda: engine, limits.ping, settings.job_broker_url)
    metrics = Metrics()

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):  # scrapes every few seconds: not worth a log line each
            pass

    host, _, port = metrics_bind.rpartition(":")
    httpd = make_server(host.strip("[]") or "127.0.0.1", int(port), serve_metrics_wsgi(lambda: metrics.render(shared)),
                        handler_class=QuietHandler)
    threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True).start()
    server.log.info("metrics on http://%s/metrics", metrics_bind)


def on_exit(server):
    if _own_metrics_dir:
        import shutil

        shutil.rmtree(_metrics_dir, ignore_errors=True)


# gunicorn's control socket (gunicornc) defaults to one path per user, shared by every gunicorn of
# that user on the host: none unless GUNICORN_CONTROL_SOCKET names one for this instance (the
# units in deploy/ use signals: HUP to reload, TERM to stop).
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket


# Draining (operations contract: /readyz is 503 while draining after SIGTERM). On the first
# SIGTERM the master marks this instance draining (a file its workers' /readyz looks at) and keeps
# serving for GUNICORN_DRAIN_SECONDS, so a load balancer that polls /readyz takes it out of
# rotation before the listener closes; then it stops as usual (in-flight requests finish). A
# second SIGTERM, or SIGINT/SIGQUIT, stops at once. 0 turns draining off.
drain_seconds = float(os.environ.get("GUNICORN_DRAIN_SECONDS", "0"))
os.environ["USHER_DRAIN_FILE"] = os.path.join(_metrics_dir, "draining")
if os.path.exists(os.environ["USHER_DRAIN_FILE"]):
    os.unlink(os.environ["USHER_DRAIN_FILE"])


def on_starting(server):
    if drain_seconds <= 0:
        return
    import signal
    import threading

    stop = server.handle_term

    def handle_term():
        if os.path.exists(os.environ["USHER_DRAIN_FILE"]):
            stop()  # the second SIGTERM (ours, after the drain, or the operator's): stop now
            return
        with open(os.environ["USHER_DRAIN_FILE"], "w") as handle:
            handle.write("draining\n")
        server.log.info("draining for %.1f s before stopping (/readyz answers 503)", drain_seconds)
        timer = threading.Timer(drain_seconds, os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()

    server.handle_term = handle_term
