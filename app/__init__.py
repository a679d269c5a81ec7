"""Usher: an identity provider for consumer-facing commerce apps."""

from __future__ import annotations

import logging

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

__version__ = "0.1.0"


def create_app(config: dict | None = None) -> Flask:
    """Build an app: config, database, extensions, blueprints, CLI and error handlers.

    Everything stateful (database, keyring, grants, limiter, OpenAPI) is made here, per app.
    """
    from app.api.admin import blp as admin_blp
    from app.api.admin import consumers, experiences, keys, outbox, queues, settings  # noqa: F401 (routes)
    from app.api.consumer import auth, external, otp  # noqa: F401 (routes)
    from app.api.consumer import blp as consumer_blp
    from app.api.consumer import experiences as consumer_experiences  # noqa: F401 (routes)
    from app.api.consumer import queues as consumer_queues  # noqa: F401 (routes)
    from app.api.health import blp as health_blp
    from app.api.oauth import blp as oauth_blp
    from app.api.wellknown import blp as wellknown_blp
    from app.cli import register_cli
    from app.config import load_config
    from app.db import Database
    from app.delivery.registry import build_senders
    from app.errors import register_error_handlers
    from app.grants.registry import build_auth_server
    from app.oauth import build_oauth_server
    from app.observability import register_observability
    from app.openapi import Api, docs_config, swagger_assets_blueprint
    from app.ratelimit import RateLimits, build_limiter
    from app.state import Usher
    from app.tokens.keyring import Keyring
    from app.tokens.service import TokenService

    app = Flask(__name__, instance_relative_config=False)
    app.config.update(docs_config(__version__))
    app.config.update(load_config())
    if config:
        app.config.update(config)
    app.json.sort_keys = False
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    trusted = int(app.config["TRUSTED_PROXY_COUNT"])
    if trusted:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=trusted, x_proto=trusted, x_host=0, x_port=0, x_prefix=0)

    db = Database(app.config["DATABASE_URL"], app.config["SQLITE_BUSY_TIMEOUT_MS"])
    keyring = Keyring(db, app.config["APP_SECRET"], app.config["KEYRING_CACHE_SECONDS"])
    tokens = TokenService(keyring, app.config["ISSUER"], app.config["TOKEN_LEEWAY_SECONDS"])
    limits = RateLimits(build_limiter(app))
    usher = Usher(db=db, auth=build_auth_server(db, tokens, limits, app.config), limits=limits,
                  senders=build_senders(db, app.config))
    app.extensions["usher"] = usher
    app.teardown_appcontext(usher.teardown)

    api = Api(app)
    api.register_blueprint(consumer_blp)
    api.register_blueprint(admin_blp)
    api.register_blueprint(wellknown_blp)
    api.register_blueprint(oauth_blp)
    api.register_blueprint(health_blp)
    app.extensions["oauth"] = build_oauth_server(app)
    app.register_blueprint(swagger_assets_blueprint())
    register_error_handlers(app)
    register_observability(app)
    register_cli(app)
    return app
