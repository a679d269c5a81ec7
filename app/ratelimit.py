"""Rate limits: the `limits` library behind one small interface, applied in the view layer only.

- One storage per app (`RATELIMIT_STORAGE_URI`: `memory://` or `redis://…`), built in `create_app`.
- One strategy, the sliding window counter: the previous window's count, weighted by how much of
  it still overlaps, plus the current one. A client cannot spend its budget at the end of one
  window and again at the start of the next (fixed windows allow twice the budget there), and a
  check costs one Redis round trip (one Lua script); only a refusal reads the window again, for
  `Retry-After`.
- Every key is `name / organization / mode / key`: test traffic never spends a live budget.
- Client addresses are keyed by `address_key`: IPv4 by address, IPv6 by its /64 (one client
  usually owns a whole /64); the views take the request's from `app.api.ratelimit.client_key`.
- Views are the one layer that applies limits (they know the tenant, the client address and the
  normalized identifier); grants and services never do.

OTP and exchange limits fail closed: if the storage is unreachable they answer 503, never run
unlimited. Others (`fail_closed=False`) fail open and log.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from app.errors import ApiError

log = logging.getLogger("usher.ratelimit")

PREFIX = "usher"


def address_key(address: str) -> str:
    """The limit key of a client address: IPv4 as is, IPv6 by its /64 (an IPv4-mapped IPv6
    address counts as its IPv4 address)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _Sweeper(threading.Timer):
    """A `threading.Timer` that fires every `interval` seconds for the life of the process."""

    def __init__(self, interval: float, sweep: Callable[[], None]):
        super().__init__(interval, sweep)
        self.every, self.sweep = interval, sweep
        self.name, self.daemon = "usher-limits-sweeper", True

    def run(self) -> None:
        while True:
            time.sleep(self.every)
            self.sweep()


class SweptMemoryStorage(MemoryStorage):
    """limits' in-process storage, its expired entries swept by one long-lived thread.

    The stock storage starts a new 10 ms `threading.Timer` whenever its `timer` has run: under
    load that is a thread start, and a wait for it, every few requests (5-7 % of a worker's time
    in the guest profile, bench/PROFILE.md). Here `timer` is one sweeper that never ends, so the
    stock storage never needs another; only public methods and attributes are used. Expired
    windows are dropped on read anyway (`MemoryStorage.get`), so the sweep only bounds memory:
    once a second is plenty. It drops expired counters (every strategy Usher uses); the moving
    window's entries, which Usher never makes, would stay."""

    def __init__(self, uri: str | None = None, sweep_seconds: float = 1.0, **options: Any) -> None:
        self.sweep_seconds = sweep_seconds
        self.sweeper: _Sweeper | None = None
        self.sweeper_lock = threading.Lock()
        super().__init__(uri, **options)

    def _ensure_sweeper(self) -> None:
        if self.sweeper is not None and self.sweeper.is_alive():
            return
        with self.sweeper_lock:  # none yet, or lost in a fork
            if self.sweeper is None or not self.sweeper.is_alive():
                self.sweeper = _Sweeper(self.sweep_seconds, self.sweep)
                self.sweeper.start()
                self.timer = self.sweeper  # alive: the stock storage starts no timer of its own

    def sweep(self) -> None:
        """Drop every expired counter (`get` drops the key it reads once it has expired)."""
        for key in list(self.expirations):
            self.get(key)

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        self._ensure_sweeper()
        return super().incr(key, expiry, amount)

    def decr(self, key: str, amount: int = 1) -> int:
        self._ensure_sweeper()
        return super().decr(key, amount)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        self._ensure_sweeper()
        return super().acquire_entry(key, limit, expiry, amount)


def build_storage(uri: str) -> Storage:
    """The app's limit storage; Redis with short timeouts, so a dead Redis fails fast (503)."""
    if uri.startswith("memory://"):
        return SweptMemoryStorage(uri, key_prefix=PREFIX)
    options = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5} if uri.startswith(("redis", "rediss")) else {}
    storage = storage_from_string(uri, key_prefix=PREFIX, **options)
    assert isinstance(storage, Storage)  # a synchronous URI (the async ones start with async+)
    return storage


class RateLimits:
    """`hit` (count one and refuse past the budget), `check` (refuse if spent, count nothing),
    `spend` (count a failure, never refuse), `clear` (give a budget back), `ping`."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self.refused: Callable[[str], None] | None = None  # told each refusal's limit name (metrics)
        self.strategy = SlidingWindowCounterRateLimiter(storage)
        self._items: dict[str, RateLimitItem] = {}

    def _item(self, rate: str) -> RateLimitItem:
        item = self._items.get(rate)
        if item is None:
            item = self._items[rate] = parse(rate)
        return item

    def _refuse(self, item: RateLimitItem, keys: tuple[str, ...]) -> ApiError:
        reset = self.strategy.get_window_stats(item, *keys).reset_time
        return ApiError("rate_limited", headers={"Retry-After": str(max(1, math.ceil(reset - time.time())))})

    @staticmethod
    def _storage_down(name: str, exc: Exception, fail_closed: bool) -> None:
        log.warning("rate limit storage unavailable for %s: %s", name, type(exc).__name__)
        if fail_closed:
            raise ApiError("service_unavailable", headers={"Retry-After": "5"}) from None

    def hit(self, name: str, rate: str, organization_id: str, mode: str, key: str, *,
            fail_closed: bool = True) -> None:
        """Count one request against `rate` for this tenant and key; 429 with Retry-After when over."""
        item, keys = self._item(rate), (name, organization_id, mode, key)
        try:
            if self.strategy.hit(item, *keys):
                return
            error = self._refuse(item, keys)
        except Exception as exc:  # noqa: BLE001 - any limit-storage failure
            self._storage_down(name, exc, fail_closed)
            return
        if self.refused is not None:
            self.refused(name)
        raise error

    def check(self, name: str, rate: str, organization_id: str, mode: str, key: str, *,
              fail_closed: bool = True) -> None:
        """429 if the budget is already spent, without spending any."""
        item, keys = self._item(rate), (name, organization_id, mode, key)
        try:
            if self.strategy.test(item, *keys):
                return
            error = self._refuse(item, keys)
        except Exception as exc:  # noqa: BLE001 - any limit-storage failure
            self._storage_down(name, exc, fail_closed)
            return
        if self.refused is not None:
            self.refused(name)
        raise error

    def spend(self, name: str, rate: str, organization_id: str, mode: str, key: str) -> None:
        """Count a failure against a budget (never refuses by itself; see `check`)."""
        try:
            self.strategy.hit(self._item(rate), name, organization_id, mode, key)
        except Exception as exc:  # noqa: BLE001 - any limit-storage failure
            self._storage_down(name, exc, fail_closed=False)

    def clear(self, name: str, rate: str, organization_id: str, mode: str, key: str) -> None:
        try:
            self.strategy.clear(self._item(rate), name, organization_id, mode, key)
        except Exception as exc:  # noqa: BLE001 - any limit-storage failure
            self._storage_down(name, exc, fail_closed=False)

    def count(self, name: str, rate: str, organization_id: str, mode: str, key: str = "all") -> None:
        """Count one event in a window whose budget is never meant to be reached (`rate` reads
        it back); fails open, as counting must never stop a request."""
        try:
            self.strategy.hit(self._item(rate), name, organization_id, mode, key)
        except Exception as exc:  # noqa: BLE001 - any limit-storage failure
            self._storage_down(name, exc, fail_closed=False)

    def rate(self, name: str, rate: str, organization_id: str, mode: str, key: str = "all") -> float:
        """How many events `count` saw in the sliding window (0 when the storage is down)."""
        item = self._item(rate)
        try:
            return item.amount - self.strategy.get_window_stats(item, name, organization_id, mode, key).remaining
        except Exception as exc:  # noqa: BLE001 - any limit-storage failure
            self._storage_down(name, exc, fail_closed=False)
            return 0

    def first_use(self, name: str, organization_id: str, mode: str, key: str, seconds: int) -> bool:
        """True for the first caller to present `key` within `seconds` on any worker or host
        sharing this storage; False for every later one. Fails closed (503): a storage that
        cannot say whether a value was used must not let it be used twice."""
        try:
            return self.storage.incr(f"{PREFIX}/{name}/{organization_id}/{mode}/{key}", seconds) == 1
        except Exception as exc:  # noqa: BLE001 - any limit-storage failure
            self._storage_down(name, exc, fail_closed=True)
            return False

    def ping(self) -> bool:
        try:
            return bool(self.storage.check())
        except Exception:  # noqa: BLE001 - any limit-storage failure
            return False
