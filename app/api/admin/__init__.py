"""The admin blueprint: everything a merchant's server does with its secret key.

Every module of this package is imported here, so a new view file needs no import list."""

from app.api.discovery import import_submodules
from app.openapi import Blueprint

blp = Blueprint("admin", __name__, url_prefix="/api/v1",
                description="Admin API: secret key (`Authorization: Bearer sk_…`), server-side only.")

import_submodules(__name__)
