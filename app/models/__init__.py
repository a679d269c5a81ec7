"""Typed models, one module per aggregate. No Flask imports here."""

from app.models.base import new_id
from app.models.experience import Experience
from app.models.organization import ApiKey, Organization

__all__ = ["ApiKey", "Experience", "Organization", "new_id"]
