"""A merchant's webhook receiver on loopback: verifies every delivery with the `standardwebhooks`
library, de-duplicates by `webhook-id` (as the Standard Webhooks spec asks receivers to), and
answers from a script of statuses, optionally hanging first."""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.live import LoopbackHTTPServer, self_signed_certificate


class Receiver(LoopbackHTTPServer):
    def __init__(self, secrets: list[str] | None = None, statuses: list[int] | None = None, hang: float = 0,
                 tls_dir: Path | None = None, log_path: Path | None = None):
        self.secrets = list(secrets or [])
        self.statuses = list(statuses or [])  # answered in turn; 200 once they run out
        self.hang = hang  # seconds to wait before answering each of the first `hang_count` requests
        self.hang_count = 1 if hang else 0
        self.received: list[dict] = []  # every request, verified or not
        self.processed: dict[str, dict] = {}  # webhook-id -> event, each processed once
        self.log_path = log_path
        self.lock = threading.Lock()
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.handle(self, body)

            def log_message(self, *args):
                pass

        super().__init__(Handler)
        scheme = "http"
        if tls_dir is not None:
            cert, key = self_signed_certificate(tls_dir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.ca_file = str(cert)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.port}/hooks"

    def verify(self, body: bytes, headers: dict) -> dict | None:
        """The event if any known secret verifies it (the library's own check), else None."""
        for secret in self.secrets:
            try:
                return Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
        return None

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        event = self.verify(body, headers)
        with self.lock:
            entry = {"headers": headers, "body": body, "event": event, "at": time.monotonic()}
            self.received.append(entry)
            number = len(self.received)
            status = self.statuses.pop(0) if self.statuses else 200
            first_time = event is not None and headers["webhook-id"] not in self.processed
            if first_time and 200 <= status < 300:
                self.processed[headers["webhook-id"]] = event
            if self.log_path is not None:
                with self.log_path.open("a") as log:
                    log.write(json.dumps({"id": headers.get("webhook-id"), "verified": event is not None,
                                          "status": status}) + "\n")
        self.arrived.set()
        if number <= self.hang_count:
            time.sleep(self.hang)
        if event is None:
            status = 400
        try:
            request.send_response(status)
            request.send_header("Content-Length", "0")
            request.end_headers()
        except OSError:
            pass  # the sender gave up (timeout, or it was killed)

    def wait_for(self, count: int, timeout: float = 20) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.received)} of {count} deliveries arrived in {timeout} s")
