"""The consumer blueprint: what browsers and apps call with the publishable key.

Every module of this package is imported here, so a new view file needs no import list."""

from app.api.discovery import import_submodules
from app.openapi import Blueprint

blp = Blueprint("consumer", __name__, url_prefix="/api/v1",
                description="Consumer API: publishable key (`X-Publishable-Key`), plus a consumer "
                            "access token where a consumer acts.")

import_submodules(__name__)
