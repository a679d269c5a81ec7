"""Named rate limits, applied where their key is known (Supabase Auth's pattern).

Flask-Limiter (built per app in `create_app`) owns the storage from `RATELIMIT_STORAGE_URI`;
views call `RateLimits.hit` with a limit name and the key parts (client IP after ProxyFix, or a
normalized identifier). OTP and exchange limits fail closed: if the storage is unreachable
they answer 503, never run unlimited. Other limits fail open and log.
"""

from __future__ import annotations

import logging
import math
import time

from flask import Flask, request
from flask_limiter import Limiter
from limits import RateLimitItem, parse

from app.errors import ApiError

log = logging.getLogger("usher.ratelimit")


def client_ip() -> str:
    """The client address after ProxyFix: only trusted hops' X-Forwarded-For is believed."""
    return request.remote_addr or "unknown"


def build_limiter(app: Flask) -> Limiter:
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
                          if app.config["RATELIMIT_STORAGE_URI"].startswith(("redis", "rediss")) else {})
    limiter = Limiter(key_func=client_ip, app=app, default_limits=[], headers_enabled=False,
                      strategy="fixed-window", key_prefix="usher")
    # No limit is declared through Flask-Limiter's decorators or defaults (each named limit is hit
    # where its key is known), so its per-request check would only look for nothing: unhook it.
    app.before_request_funcs[None].remove(limiter._check_request_limit)
    return limiter


class RateLimits:
    def __init__(self, limiter: Limiter):
        self.limiter = limiter
        self._items: dict[str, RateLimitItem] = {}

    def _item(self, limit: str) -> RateLimitItem:
        item = self._items.get(limit)
        if item is None:
            item = self._items[limit] = parse(limit)
        return item

    def _retry_after(self, item: RateLimitItem, keys: tuple[str, ...]) -> str:
        reset = self.limiter.limiter.get_window_stats(item, *keys).reset_time
        return str(max(1, math.ceil(reset - time.time())))

    def _storage_down(self, name: str, exc: Exception, fail_closed: bool) -> None:
        log.warning("rate limit storage unavailable for %s: %s", name, type(exc).__name__)
        if fail_closed:
            raise ApiError("service_unavailable", headers={"Retry-After": "5"}) from None

    def hit(self, name: str, limit: str, *keys: str, fail_closed: bool = True) -> None:
        """Count one request against `limit` for these keys; 429 with Retry-After when over."""
        item = self._item(limit)
        keys = (name, *keys)
        try:
            if self.limiter.limiter.hit(item, *keys):
                return
            retry_after = self._retry_after(item, keys)
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - any limit-storage failure
            self._storage_down(name, exc, fail_closed)
            return
        raise ApiError("rate_limited", headers={"Retry-After": retry_after})

    def check(self, name: str, limit: str, *keys: str, fail_closed: bool = True) -> None:
        """429 if the budget is already spent, without spending any."""
        item = self._item(limit)
        keys = (name, *keys)
        try:
            if self.limiter.limiter.test(item, *keys):
                return
            retry_after = self._retry_after(item, keys)
        except Exception as exc:  # noqa: BLE001 - any limit-storage failure
            self._storage_down(name, exc, fail_closed)
            return
        raise ApiError("rate_limited", headers={"Retry-After": retry_after})

    def spend(self, name: str, limit: str, *keys: str) -> None:
        """Count a failure against a budget (never refuses by itself; see `check`)."""
        try:
            self.limiter.limiter.hit(self._item(limit), name, *keys)
        except Exception as exc:  # noqa: BLE001 - any limit-storage failure
            log.warning("rate limit storage unavailable for %s: %s", name, type(exc).__name__)

    def clear(self, name: str, limit: str, *keys: str) -> None:
        try:
            self.limiter.limiter.clear(self._item(limit), name, *keys)
        except Exception as exc:  # noqa: BLE001 - any limit-storage failure
            log.warning("rate limit storage unavailable for %s: %s", name, type(exc).__name__)

    def ping(self) -> bool:
        try:
            return bool(self.limiter.storage.check())
        except Exception:  # noqa: BLE001 - any limit-storage failure
            return False
