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
