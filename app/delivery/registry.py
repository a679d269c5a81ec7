"""Usher's own senders, and the senders of one app chosen by name from the registry (in create_app)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.delivery.base import Sender
from app.delivery.capture import CaptureSender
from app.delivery.console import ConsoleSender
from app.delivery.smtp import SmtpSender
from app.delivery.webhook import WebhookSender
from app.errors import ApiError
from app.registry import Registry, SenderContext, SenderPlugin
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


def _smtp(ctx: SenderContext) -> Sender:
    s = ctx.settings
    return SmtpSender(s.smtp_host, s.smtp_port, s.otp_email_from, s.smtp_username, s.smtp_password, s.smtp_starttls)


def _capture(ctx: SenderContext) -> CaptureSender:
    return CaptureSender(ctx.db, Sealer(ctx.settings.app_secret, CAPTURE_SEAL, ctx.settings.app_secret_fallbacks),
                         ctx.clock)


# Usher's own senders, registered as `usher.senders` entry points (see `app.registry.BUILTINS`).
CONSOLE = SenderPlugin("console", ("email", "sms"), lambda ctx: ConsoleSender())
SMTP = SenderPlugin("smtp", ("email",), _smtp)
WEBHOOK = SenderPlugin("webhook", ("sms",), lambda ctx: WebhookSender(ctx.settings.sms_webhook_url or "",
                                                                      ctx.settings.sms_webhook_timeout))
CAPTURE = SenderPlugin("capture", (), _capture)


def build_senders(registry: Registry, ctx: SenderContext) -> Senders:
    """The senders the settings name (unknown names stop the app, listing the installed ones),
    plus test mode's capture."""
    settings = ctx.settings
    email = registry.sender("OTP_EMAIL_SENDER", settings.otp_email_sender, "email").build(ctx)
    sms = registry.sender("OTP_SMS_SENDER", settings.otp_sms_sender, "sms").build(ctx)
    capture = registry.senders["capture"].build(ctx)
    assert isinstance(capture, CaptureSender)  # the test outbox reads what it sealed
    return Senders(email=email, sms=sms, capture=capture)
