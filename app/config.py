"""Typed settings: read once per app from the environment (and the overrides `create_app` is
given, under the same names), validated, and failing fast with a message that names the
variable. The rest of Usher reads `Settings` attributes, never the environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from limits import parse as parse_limit

MIN_APP_SECRET_LENGTH = 32
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A setting that cannot work; the message names the variable."""


def default_instance_dir() -> Path:
    return Path(os.environ.get("USHER_INSTANCE_DIR", Path(__file__).resolve().parent.parent / "instance"))


def ensure_instance_dir(path: Path) -> Path:
    """`instance/` holds the generated secret and the SQLite database: owner only (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def instance_secret(instance_dir: Path) -> str:
    """The development APP_SECRET, generated into `instance/app_secret` on first run.

    Written whole into a private temporary file and then linked into place, so that processes
    starting together never read a half-written (or empty) secret: exactly one link wins and
    everybody reads the winner's file."""
    path = ensure_instance_dir(instance_dir) / "app_secret"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=instance_dir, prefix=".app_secret.")  # 0600, O_EXCL
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process linked its secret first
                os.link(tmp, path)  # atomic, and never replaces an existing secret
        finally:
            os.unlink(tmp)
    return path.read_text().strip()


@dataclass(frozen=True)
class Settings:
    """Every deployment setting (see the Configuration table in the README)."""

    database_url: str
    app_secret: str
    #: Earlier secrets, still accepted for checks and unseals while a rotation is under way.
    app_secret_fallbacks: tuple[str, ...] = field(default_factory=tuple)
    ratelimit_storage_uri: str = "memory://"
    issuer: str = "http://127.0.0.1:8000"
    trusted_proxy_count: int = 0
    max_content_length: int = 64 * 1024
    token_leeway_seconds: int = 30
    refresh_grace_seconds: int = 10
    keyring_cache_seconds: float = 5
    #: How long a worker may reuse a publishable key's row (key, organization, settings) before
    #: reading it again: at most 1 s; 0 reads it on every request. Secret keys are never cached.
    publishable_key_cache_seconds: float = 1.0
    #: How long a rotated-in signing key is published before it signs (longer than the JWKS max-age).
    signing_key_lead_seconds: int = 600
    guest_rate_limit: str = "60 per minute"
    exchange_rate_limit: str = "120 per minute"
    #: Failed dashboard sign-ins per client address; once spent, every sign-in from it is refused.
    dashboard_sign_in_rate_limit: str = "20 per hour"
    otp_email_sender: str = "console"
    otp_sms_sender: str = "console"
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    otp_email_from: str = "Usher <no-reply@localhost>"
    sms_webhook_url: str | None = None
    sms_webhook_timeout: float = 5.0
    #: Grant types served; empty means every built-in (a plugin's grant is served only when named).
    #: A grant not served has no route. Sender names are checked against the registry at start.
    enabled_grants: tuple[str, ...] = field(default_factory=tuple)
    sqlite_busy_timeout_ms: int = 10000
    #: PostgreSQL connections each process keeps (DATABASE_POOL_SIZE) and may add at a peak
    #: (DATABASE_MAX_OVERFLOW): a process holds at most their sum (README, "Connection budget").
    database_pool_size: int = 5
    database_max_overflow: int = 5
    #: Seconds a request waits for a free connection of its process's pool before answering 503.
    database_pool_timeout_seconds: float = 5.0
    #: PostgreSQL statement_timeout and lock_timeout of Usher's connections (0: none). A statement
    #: cut short answers 503, instead of holding a worker until gunicorn's timeout.
    database_statement_timeout_ms: int = 10000
    database_lock_timeout_ms: int = 5000
    log_level: str = "INFO"
    #: Swagger UI at /docs (`DOCS_ENABLED=false` switches it off; /openapi.json stays).
    docs_enabled: bool = True
    # Events out and data lifecycle (issue 14).
    #: The job engine's broker (Dramatiq on Redis); unset: jobs run in-process.
    job_broker_url: str | None = None
    job_worker_threads: int = 4
    job_heartbeat_timeout_seconds: int = 60
    webhook_timeout_seconds: float = 10.0
    webhook_listeners_cache_seconds: float = 1.0
    webhook_ca_file: str | None = None
    guest_retention_days: int = 30
    #: May test-mode webhook endpoints use `http` and loopback/private addresses? `auto`: only
    #: when the database is a SQLite file (a developer's machine); `allow`; `deny`.
    webhook_private_targets: str = "auto"
    # Bot defense (issue 25): where Turnstile and hCaptcha tokens are checked.
    turnstile_verify_url: str = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
    hcaptcha_verify_url: str = "https://api.hcaptcha.com/siteverify"
    # Running on many hosts (issue 24).
    #: host:port of a separate /metrics listener (gunicorn's master); unset: /metrics on the main
    #: port, to loopback clients that forward nobody.
    metrics_bind: str | None = None
    #: CIDRs of the proxies whose X-Forwarded-* headers are believed (empty: loopback only).
    trusted_proxies: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if len(self.app_secret) < MIN_APP_SECRET_LENGTH:
            raise ConfigError(f"APP_SECRET must be at least {MIN_APP_SECRET_LENGTH} characters "
                              f"(got {len(self.app_secret)}); generate one with "
                              "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`")
        for fallback in self.app_secret_fallbacks:
            if len(fallback) < MIN_APP_SECRET_LENGTH:
                raise ConfigError(f"every APP_SECRET_FALLBACKS entry must be at least {MIN_APP_SECRET_LENGTH} "
                                  "characters (they are earlier APP_SECRET values, comma-separated)")
        for name in ("guest_rate_limit", "exchange_rate_limit", "dashboard_sign_in_rate_limit"):
            try:
                parse_limit(getattr(self, name))
            except ValueError:
                raise ConfigError(f"{name.upper()} is not a rate limit such as '60 per minute'") from None
        if self.otp_sms_sender == "webhook" and not self.sms_webhook_url:
            raise ConfigError("OTP_SMS_SENDER=webhook needs SMS_WEBHOOK_URL")
        if self.trusted_proxy_count < 0:
            raise ConfigError("TRUSTED_PROXY_COUNT must be 0 or more")
        from app.proxies import parse_networks

        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"TRUSTED_PROXIES has {exc} which is not an address or CIDR "
                              "(comma-separated, such as 10.0.0.0/8,192.0.2.10)") from None
        if self.metrics_bind is not None and not re.fullmatch(r"\[?[0-9A-Za-z.:-]*\]?:\d{1,5}", self.metrics_bind):
            raise ConfigError("METRICS_BIND must be host:port, such as 127.0.0.1:9100")
        if self.job_broker_url is not None and not self.job_broker_url.startswith(("redis://", "rediss://",
                                                                                    "unix://")):
            raise ConfigError("JOB_BROKER_URL must be a Redis URL (redis://host:6379/1)")
        if self.job_worker_threads < 1 or self.job_heartbeat_timeout_seconds < 1:
            raise ConfigError("JOB_WORKER_THREADS and JOB_HEARTBEAT_TIMEOUT_SECONDS must be 1 or more")
        if not 0 < self.webhook_timeout_seconds <= 60:
            raise ConfigError("WEBHOOK_TIMEOUT_SECONDS must be more than 0 and at most 60")
        if not 0 <= self.publishable_key_cache_seconds <= 1:
            raise ConfigError("PUBLISHABLE_KEY_CACHE_SECONDS must be between 0 and 1")
        for name in ("turnstile_verify_url", "hcaptcha_verify_url"):
            if not getattr(self, name).startswith(("https://", "http://")):
                raise ConfigError(f"{name.upper()} must be an http(s) URL")
        if self.webhook_private_targets not in ("auto", "allow", "deny"):
            raise ConfigError("WEBHOOK_PRIVATE_TARGETS must be 'auto', 'allow' or 'deny'")
        if self.database_pool_size < 1 or self.database_max_overflow < 0 or (
                self.database_pool_size + self.database_max_overflow < 2):
            raise ConfigError("DATABASE_POOL_SIZE must be 1 or more, DATABASE_MAX_OVERFLOW 0 or more, and their sum "
                              "at least 2 (a request may hold two connections at once)")
        if self.database_pool_timeout_seconds <= 0:
            raise ConfigError("DATABASE_POOL_TIMEOUT_SECONDS must be more than 0")
        if self.database_statement_timeout_ms < 0 or self.database_lock_timeout_ms < 0:
            raise ConfigError("DATABASE_STATEMENT_TIMEOUT_MS and DATABASE_LOCK_TIMEOUT_MS must be 0 or more")
        if self.guest_retention_days < 1:
            raise ConfigError("GUEST_RETENTION_DAYS must be 1 or more")

    @property
    def private_webhook_targets_allowed(self) -> bool:
        """`WEBHOOK_PRIVATE_TARGETS` decided: `auto` allows them on a SQLite file only."""
        if self.webhook_private_targets == "auto":
            return self.database_url.startswith("sqlite:///") and ":memory:" not in self.database_url
        return self.webhook_private_targets == "allow"

    @property
    def app_secrets(self) -> tuple[str, ...]:
        """APP_SECRET first, then its fallbacks: what checks and unseals try, in that order."""
        return (self.app_secret, *(f for f in self.app_secret_fallbacks if f != self.app_secret))


    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from `environ` (default: the process environment), then `overrides`, both
        keyed by the variable names (`DATABASE_URL`, …). Names that are not settings are ignored
        here (Flask's own config keys pass through `create_app`)."""
        environ = os.environ if environ is None else environ
        overrides = overrides or {}
        values: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            name = item.name.upper()
            if name in overrides:
                raw = overrides[name]
            elif environ.get(name) not in (None, ""):
                raw = environ[name]
            else:
                continue
            values[item.name] = _coerce(name, item.type, raw)
        if "issuer" not in values:
            values["issuer"] = issuer_from_bind(environ.get("BIND"))
        if "app_secret" not in values and not is_sqlite_file(values.get("database_url")):
            raise ConfigError("APP_SECRET is not set: it is required when DATABASE_URL is not a SQLite file "
                              "(every host sharing a database must use the same APP_SECRET; a generated one "
                              "would not open what the others sealed)")
        if "database_url" not in values or "app_secret" not in values:
            instance_dir = ensure_instance_dir(default_instance_dir())
            values.setdefault("database_url", f"sqlite:///{instance_dir / 'usher.sqlite3'}")
            values.setdefault("app_secret", instance_secret(instance_dir))
        return cls(**values)


def issuer_from_bind(bind: str | None) -> str:
    """ISSUER's default: where gunicorn listens (`BIND`, default 127.0.0.1:8000), so tokens' `iss`
    and the discovery document name the port the app really answers on. A wildcard address is
    reached as 127.0.0.1; a Unix socket or several addresses keep the documented default."""
    default = Settings.__dataclass_fields__["issuer"].default
    if not bind or bind.startswith(("unix:", "fd://")) or " " in bind.strip() or "," in bind:
        return str(default)
    host, _, port = bind.strip().rpartition(":")
    if not port.isdigit():
        return str(default)
    with contextlib.suppress(ValueError):  # a wildcard address is reached as 127.0.0.1
        if not host or ipaddress.ip_address(host.strip("[]")).is_unspecified:
            host = "127.0.0.1"
    return f"http://{host or '127.0.0.1'}:{port}"
def is_sqlite_file(url: str | None) -> bool:
    """None (the embedded default) or a `sqlite:///path` URL: a database of this host only."""
    return url is None or (url.startswith("sqlite") and ":memory:" not in url and url.count("/") >= 3)


def _coerce(name: str, annotation: Any, raw: Any) -> Any:
    """Environment strings (or override values) into the declared type, or a ConfigError."""
    kind = str(annotation)
    try:
        if raw is None:
            return None
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("bool"):
            if isinstance(raw, bool):
                return raw
            if str(raw).strip().lower() in _TRUE | _FALSE:
                return str(raw).strip().lower() in _TRUE
            raise ValueError(raw)
        if kind.startswith("tuple"):
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(item.strip() for item in items if item.strip())
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} has an invalid value {raw!r} (expected {kind})") from None
