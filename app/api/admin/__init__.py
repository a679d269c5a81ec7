"""The admin blueprint: everything a merchant's server does with its secret key."""

from app.openapi import Blueprint

blp = Blueprint("admin", __name__, url_prefix="/api/v1",
                description="Admin API: secret key (`Authorization: Bearer sk_…`), server-side only.")

