from __future__ import annotations

import http.client
import json
import time
import uuid
from urllib.parse import urlsplit

from app.delivery.base import DeliveryError, Message


class WebhookSender:
    """POSTs `{"to", "body"}` as JSON to SMS_WEBHOOK_URL.

    Retries only when the connection could not be made, i.e. before anything was sent, so a
    message is never sent twice; every attempt carries the same `Idempotency-Key` as well.
    """

    name = "webhook"

    def __init__(self, url: str, timeout: float = 5, connect_retries: int = 2, backoff: float = 0.2):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("SMS_WEBHOOK_URL must be an http(s) URL")
        self.url, self.parts, self.host = url, parts, parts.hostname
        self.timeout, self.connect_retries, self.backoff = timeout, connect_retries, backoff

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.parts.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.parts.port, timeout=self.timeout)

    def send(self, message: Message) -> None:
        payload = json.dumps({"to": message.to, "body": message.body}).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
        path = self.parts.path or "/"
        if self.parts.query:
            path += "?" + self.parts.query
        for attempt in range(self.connect_retries + 1):
            connection = self._connection()
            try:
                connection.connect()
            except OSError as exc:
                connection.close()
                if attempt == self.connect_retries:
                    raise DeliveryError(f"webhook: cannot connect ({type(exc).__name__})") from exc
                time.sleep(self.backoff * (2 ** attempt))
                continue
            try:  # from here on the request may have arrived: never again
                connection.request("POST", path, body=payload, headers=headers)
                response = connection.getresponse()
                response.read()
            except OSError as exc:
                raise DeliveryError(f"webhook: {type(exc).__name__}") from exc
            finally:
                connection.close()
            if not 200 <= response.status < 300:
                raise DeliveryError(f"webhook: HTTP {response.status}")
            return
