from __future__ import annotations

import sys

from app.delivery.base import Message


class ConsoleSender:
    """Development delivery: writes the message to the terminal (stdout), not to the log."""

    name = "console"

    def send(self, message: Message) -> None:
        print(f"[usher {message.channel} to {message.to}] {message.body}", file=sys.stdout, flush=True)
