from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from app.db import Database
from app.delivery.base import Message
from app.models import CapturedMessage, new_id
from app.security.crypto import Sealer


class CaptureSender:
    """Test mode: keep the message for `GET /test/otp-messages`; nothing leaves the service.

    The body and the code are sealed together (JSON), never stored in the clear; a row sealed
    before the code was kept holds the body alone and reads with no code."""

    name = "capture"

    def __init__(self, db: Database, sealer: Sealer, clock: Callable[[], datetime]):
        self.db, self.sealer, self.clock = db, sealer, clock

    def send(self, message: Message) -> None:
        message_id = new_id("msg")
        row = CapturedMessage(id=message_id, organization_id=message.organization_id, mode=message.mode,
                              channel=message.channel, recipient=message.to, created_at=self.clock(),
                              body_sealed=self.sealer.seal(
                                  json.dumps({"body": message.body, "code": message.code}).encode(), message_id))
        with self.db.transaction() as session:
            session.add(row)

    def read(self, row: CapturedMessage) -> tuple[str, str | None]:
        """The body and the code of a captured message."""
        text = self.sealer.open(row.body_sealed, row.id).decode()
        if not text.startswith("{"):  # sealed before the code was kept: a body is prose, never JSON
            return text, None
        sealed = json.loads(text)
        return sealed["body"], sealed["code"]
