"""Typed models, one module per aggregate. No Flask imports here."""

from app.models.app_secret import AppSecretFingerprint
from app.models.audit import AuditChain, AuditEvent
from app.models.base import new_id
from app.models.consumer import AuthSession, Consumer
from app.models.dashboard import DashboardSession
from app.models.experience import Experience
from app.models.external import ExchangeCode, ExternalIdentity
from app.models.organization import ApiKey, Organization, OrganizationSettings
from app.models.otp import CapturedMessage, OtpCode
from app.models.queue import Queue, QueueCount, QueueEntry
from app.models.signing_key import SigningKey
from app.models.webhook import (
           WebhookDelivery,
           WebhookEndpoint,
           WebhookEvent,
           WebhookSubscription,
)

__all__ = ["ApiKey", "AppSecretFingerprint",
           "AuditChain", "AuditEvent", "AuthSession", "CapturedMessage", "Consumer", "DashboardSession",
           "ExchangeCode", "Experience", "ExternalIdentity", "Organization", "OrganizationSettings", "OtpCode", "Queue",
           "QueueCount", "QueueEntry",
           "SigningKey", "WebhookDelivery", "WebhookEndpoint", "WebhookEvent", "WebhookSubscription",
           "new_id"]
