"""Build the senders of one app from its config (in create_app)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from app.config import Settings
from app.db import Database
from app.delivery.base import Sender
from app.delivery.capture import CaptureSender
from app.delivery.console import ConsoleSender
from app.delivery.smtp import SmtpSender
from app.delivery.webhook import WebhookSender
from app.errors import ApiError
from app.security.crypto import CAPTURE_SEAL, Sealer

log = logging.getLogger("usher.delivery")


@dataclass
class Senders:
    email: Sender
    sms: Sender
    capture: CaptureSender

    def for_message(self, channel: str, mode: str) -> Sender:
        """Test-mode messages never reach a real sender; live-mode codes never reach the console
        (a terminal is a log): without a real sender, live OTP answers 503."""
        if mode == "test":
            return self.capture
        sender = self.email if channel == "email" else self.sms
        if sender.name == ConsoleSender.name:
            log.error("no %s sender for live-mode codes: set OTP_%s_SENDER", channel, channel.upper())
            raise ApiError("service_unavailable", "Codes cannot be sent in live mode yet.",
                           headers={"Retry-After": "60"})
        return sender


def build_senders(db: Database, settings: Settings, clock: Callable[[], datetime]) -> Senders:
    """The senders the settings name (validated in `Settings`), plus test mode's capture."""
    email: Sender
    sms: Sender
    if settings.otp_email_sender == "smtp":
        email = SmtpSender(settings.smtp_host, settings.smtp_port, settings.otp_email_from, settings.smtp_username,
                           settings.smtp_password, settings.smtp_starttls)
    else:
        email = ConsoleSender()
    if settings.otp_sms_sender == "webhook":
        sms = WebhookSender(settings.sms_webhook_url or "", settings.sms_webhook_timeout)
    else:
        sms = ConsoleSender()
    capture = CaptureSender(db, Sealer(settings.app_secret, CAPTURE_SEAL, settings.app_secret_fallbacks), clock)
    return Senders(email=email, sms=sms, capture=capture)
