"""Usher's rate limits on Flask-Limiter's public API: the attempt (issue 26), kept runnable.

Flask-Limiter is not in Usher's locks; run this in a throw-away venv:

    python3 -m venv /tmp/fl && /tmp/fl/bin/pip install --require-hashes -r requirements.txt
    /tmp/fl/bin/pip install flask-limiter==4.1.1
    /tmp/fl/bin/python docs/attempts/flask_limiter.py

It rebuilds, on a bare Flask app, the limits of `POST /auth/guest`, `/auth/otp/request` and
`/auth/otp/verify` as README "Rate limits" and "One-time codes" document them, with only what
Flask-Limiter documents (https://flask-limiter.readthedocs.io/en/stable/): a storage URI and
options, the sliding window counter strategy, key functions, dynamic limit providers, named
shared limits, `deduct_when`, limits used as context managers inside the view (so a limit keyed
by the normalized identifier runs after validation, in the documented order), `on_breach`,
`current_limits`, and `swallow_errors`. Then it checks each documented behaviour and prints
which ones hold. The one it cannot express is the storage-outage rule (see `outage()` and the
README paragraph under "Rate limits").
"""

from __future__ import annotations

import math
import socket
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from flask import Flask, g, jsonify, request  # noqa: E402
from flask_limiter import Limiter, RateLimitExceeded  # noqa: E402
from limits.errors import StorageError  # noqa: E402
from limits.storage import MemoryStorage  # noqa: E402

ORG, MODE = "org_1", "test"
SETTINGS = {"otp_cooldown": 30, "otp_requests_per_hour": 5, "otp_requests_per_ip_per_hour": 20}
FAILURES_PER_IDENTIFIER = "10 per hour"


def tenant_key(part: str) -> str:
    """Usher's `organization / mode / key`: test traffic never spends a live budget."""
    return f"{ORG}/{MODE}/{part}"


def by_ip() -> str:
    return tenant_key(request.remote_addr or "unknown")


def by_identifier() -> str:
    return tenant_key(g.identifier)  # set by the view once the body is validated and normalized


class SenderDown(Exception):
    pass


class FlakyMemoryStorage(MemoryStorage):
    """`flaky://`: limits' memory storage that goes down when told (`DOWN`), to cut the storage in
    the middle of a request (a custom scheme is how limits takes a storage of one's own)."""

    STORAGE_SCHEME = ["flaky"]  # noqa: RUF012 - limits' registry reads the class attribute
    DOWN = False

    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if FlakyMemoryStorage.DOWN:
            raise ConnectionError("storage down")
        return super().acquire_sliding_window_entry(key, limit, expiry, amount)

    @property
    def base_exceptions(self) -> type[Exception]:
        return ConnectionError


def build(storage_uri: str, storage_options: dict | None = None) -> tuple[Flask, dict]:
    app = Flask(__name__)
    common = {"storage_uri": storage_uri, "storage_options": {"wrap_exceptions": True, **(storage_options or {})},
              "strategy": "sliding-window-counter", "headers_enabled": False, "key_prefix": "usher"}
    # Flask-Limiter decides fail-open or fail-closed per extension (`swallow_errors`), so two.
    closed = Limiter(by_ip, app=app, swallow_errors=False, **common)  # OTP, exchange: never unlimited
    opened = Limiter(by_ip, app=app, swallow_errors=True, **common)  # guests: a drop must not stop

    guest_limit = opened.shared_limit("60 per minute", scope="guest_per_ip")
    ip_request = closed.shared_limit(lambda: f"{SETTINGS['otp_requests_per_ip_per_hour']} per hour",
                                     scope="otp_request_ip")
    cooldown = closed.shared_limit(lambda: f"1 per {SETTINGS['otp_cooldown']} second",
                                   scope="otp_request_cooldown", key_func=by_identifier)
    hourly = closed.shared_limit(lambda: f"{SETTINGS['otp_requests_per_hour']} per hour",
                                 scope="otp_request_identifier", key_func=by_identifier)
    failures = closed.shared_limit(FAILURES_PER_IDENTIFIER, scope="otp_failures", key_func=by_identifier,
                                   deduct_when=lambda response: (response.get_json(silent=True) or {}).get(
                                       "error") == "otp_invalid")

    @app.errorhandler(StorageError)  # raised by the fail-closed extension only
    def storage_down(exc: StorageError):
        return jsonify(error="service_unavailable"), 503, {"Retry-After": "5"}

    @app.errorhandler(RateLimitExceeded)
    def limited(exc: RateLimitExceeded):
        limit = closed.current_limit or opened.current_limit
        retry = max(1, math.ceil(limit.reset_at - time.time())) if limit else 1
        return jsonify(error="rate_limited"), 429, {"Retry-After": str(retry)}

    @app.post("/auth/guest")
    @guest_limit
    def guest():
        return jsonify(sessionId="sess_1"), 201

    @app.post("/auth/otp/request")
    def otp_request():
        g.identifier = request.get_json()["email"].strip().lower()  # validated and normalized first
        with ip_request:
            pass
        with cooldown:
            spent = list(closed.current_limits)
        with hourly:
            pass
        try:
            if request.args.get("sender") == "down":
                raise SenderDown
        except SenderDown:
            for limit in spent:  # the resend cooldown is given back: the code was never sent
                closed.storage.clear_sliding_window(limit.key, limit.limit.get_expiry())
            return jsonify(error="service_unavailable"), 503
        return jsonify(sent=True), 202

    @app.post("/auth/otp/verify")
    def otp_verify():
        g.identifier = request.get_json()["email"].strip().lower()
        with failures:
            pass
        if request.args.get("storage") == "dies":  # after the check passed, before the spend
            FlakyMemoryStorage.DOWN = True
        if request.get_json()["code"] != "123456":
            return jsonify(error="otp_invalid"), 401
        return jsonify(sessionId="sess_2"), 200

    return app, {"closed": closed, "opened": opened}


def post(client, path: str, body: dict | None = None, address: str = "192.0.2.1"):
    return client.post(path, json=body, environ_base={"REMOTE_ADDR": address})


def behaviours() -> dict[str, bool]:
    """What Flask-Limiter expresses on the in-memory storage."""
    app, _ = build("memory://")
    client = app.test_client()
    out: dict[str, bool] = {}
    answers = [post(client, "/auth/guest").status_code for _ in range(61)]
    refused = post(client, "/auth/guest")
    out["guest: 60 per minute per client address, then 429 with Retry-After"] = (
        answers[:60] == [201] * 60 and answers[60] == 429 and refused.json == {"error": "rate_limited"}
        and int(refused.headers["Retry-After"]) >= 1)
    other = post(client, "/auth/guest", address="192.0.2.2")
    out["guest: another address has its own budget"] = other.status_code == 201

    first = post(client, "/auth/otp/request", {"email": "Ann@Example.com"})
    again = post(client, "/auth/otp/request", {"email": "ann@example.com"})
    out["otp request: one code per normalized identifier per cooldown"] = (
        first.status_code == 202 and again.status_code == 429 and "Retry-After" in again.headers)
    failed = post(client, "/auth/otp/request?sender=down", {"email": "bob@example.com"})
    retried = post(client, "/auth/otp/request", {"email": "bob@example.com"})
    out["otp request: a sender failure gives the cooldown back"] = (
        (failed.status_code, retried.status_code) == (503, 202))

    wrong = [post(client, "/auth/otp/verify", {"email": "cat@example.com", "code": "000000"}).status_code
             for _ in range(10)]
    eleventh = post(client, "/auth/otp/verify", {"email": "cat@example.com", "code": "123456"})
    right = [post(client, "/auth/otp/verify", {"email": "dan@example.com", "code": "123456"}).status_code
             for _ in range(12)]
    out["otp verify: 10 wrong codes per identifier per hour, then 429 even for the right one"] = (
        wrong == [401] * 10 and eleventh.status_code == 429)
    out["otp verify: right codes spend nothing"] = right == [200] * 12
    return out


def outage() -> dict[str, bool]:
    """The storage-outage rule: OTP answers 503 `service_unavailable` with `Retry-After` (README,
    "One-time codes": "if it is unreachable, OTP endpoints answer 503 ... never unlimited"), and a
    guest is still served (README, "Rate limits": guest limits fail open)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    app, _ = build(f"redis://127.0.0.1:{port}/0", {"socket_connect_timeout": 0.5, "socket_timeout": 0.5})
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client = app.test_client()
    guest = post(client, "/auth/guest")
    otp = post(client, "/auth/otp/request", {"email": "ann@example.com"})
    out = {
        "outage: a guest is still served (fails open)": guest.status_code == 201,
        "outage: OTP never runs unlimited": otp.status_code != 202,
        "outage: OTP answers 503 service_unavailable with Retry-After": (
            otp.status_code == 503 and (otp.get_json(silent=True) or {}).get("error") == "service_unavailable"
            and "Retry-After" in otp.headers),
    }
    # Usher checks the failure budget fail-closed and spends it fail-open (app/ratelimit.py:
    # `check` then `spend`): a storage lost between the two still answers the wrong code with
    # 401 `otp_invalid` (and logs). In Flask-Limiter a limit's test and its `deduct_when`
    # deduction belong to one extension, hence one `swallow_errors`; and two extensions cannot
    # share one counter on `memory://` (each builds its own storage from the URI).
    app, _ = build("flaky://")
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client = app.test_client()
    wrong = post(client, "/auth/otp/verify?storage=dies", {"email": "eve@example.com", "code": "000000"})
    FlakyMemoryStorage.DOWN = False
    print(f"(a wrong code while the storage dies after the check: {wrong.status_code} {wrong.get_json(silent=True)})")
    out["outage between the check and the spend: a wrong code still answers 401 otp_invalid"] = (
        wrong.status_code == 401 and (wrong.get_json(silent=True) or {}).get("error") == "otp_invalid")
    return out


if __name__ == "__main__":
    results = {**behaviours(), **outage()}
    for name, held in results.items():
        print(f"{'holds  ' if held else 'FAILS  '} {name}")
    print(f"{sum(results.values())} of {len(results)} documented behaviours expressed")
