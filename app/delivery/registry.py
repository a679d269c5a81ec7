"""Build the senders of one app from its config (in create_app)."""

from __future__ import annotations

from dataclasses import dataclass

from app.db import Database
from app.delivery.base import Sender
from app.delivery.capture import CaptureSender
from app.delivery.console import ConsoleSender
from app.delivery.smtp import SmtpSender
from app.delivery.webhook import WebhookSender
from app.security.crypto import Sealer


@dataclass
class Senders:
    email: Sender
    sms: Sender
    capture: CaptureSender

    def for_message(self, channel: str, mode: str) -> Sender:
        """Test-mode messages never reach a real sender."""
        if mode == "test":
            return self.capture
        return self.email if channel == "email" else self.sms


def _truthy(value) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def build_senders(db: Database, config: dict) -> Senders:
    email_name, sms_name = config["OTP_EMAIL_SENDER"], config["OTP_SMS_SENDER"]
    if email_name == "smtp":
        email: Sender = SmtpSender(config["SMTP_HOST"], int(config["SMTP_PORT"]), config["OTP_EMAIL_FROM"],
                                   config.get("SMTP_USERNAME"), config.get("SMTP_PASSWORD"),
                                   _truthy(config.get("SMTP_STARTTLS")))
    elif email_name == "console":
        email = ConsoleSender()
    else:
        raise ValueError(f"OTP_EMAIL_SENDER must be console or smtp, not {email_name!r}")
    if sms_name == "webhook":
        sms: Sender = WebhookSender(config["SMS_WEBHOOK_URL"], float(config["SMS_WEBHOOK_TIMEOUT"]))
    elif sms_name == "console":
        sms = ConsoleSender()
    else:
        raise ValueError(f"OTP_SMS_SENDER must be console or webhook, not {sms_name!r}")
    return Senders(email=email, sms=sms, capture=CaptureSender(db, Sealer(config["APP_SECRET"], "usher outbox v1")))
