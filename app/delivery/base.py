from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Message:
    channel: str  # "email" | "sms"
    to: str
    subject: str
    body: str
    organization_id: str
    mode: str
    code: str | None = None  # the one-time code the body carries; kept (sealed) only by test mode's capture


class DeliveryError(Exception):
    """The message could not be handed to the sender; it was not sent."""


class Sender(Protocol):
    name: str

    def send(self, message: Message) -> None:
        """Hand the message over, or raise DeliveryError."""
