"""Real delivery peers on loopback: an SMTP server (aiosmtpd) and an HTTP webhook."""

from __future__ import annotations

import json
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler

from aiosmtpd.controller import Controller

from tests.live import LoopbackHTTPServer, free_port


class SmtpPeer:
    def __init__(self):
        self.messages: list = []
        self.port = free_port()
        peer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                peer.messages.append(message_from_bytes(envelope.content))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


class WebhookPeer(LoopbackHTTPServer):
    """Records every POST; answers `status` (200 by default)."""

    def __init__(self, status: int = 200):
        self.requests: list[dict] = []
        self.status = status
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                peer.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
                self.send_response(peer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(Handler)
        self.url = f"http://127.0.0.1:{self.port}/sms"
