from __future__ import annotations

import smtplib
from email.message import EmailMessage

from app.delivery.base import DeliveryError, Message


class SmtpSender:
    name = "smtp"

    def __init__(self, host: str, port: int, sender: str, username: str | None = None, password: str | None = None,
                 starttls: bool = False, timeout: float = 10):
        self.host, self.port, self.sender = host, port, sender
        self.username, self.password, self.starttls, self.timeout = username, password, starttls, timeout

    def send(self, message: Message) -> None:
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email.set_content(message.body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(email)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"smtp: {type(exc).__name__}") from exc
