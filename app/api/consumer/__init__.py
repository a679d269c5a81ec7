"""The consumer blueprint: what browsers and apps call with the publishable key."""

from app.openapi import Blueprint

blp = Blueprint("consumer", __name__, url_prefix="/api/v1",
                description="Consumer API: publishable key (`X-Publishable-Key`), plus a consumer "
                            "access token where a consumer acts.")

