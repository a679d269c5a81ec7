"""The in-process limit storage (`memory://`, the embedded default): limits' `MemoryStorage`
with one long-lived sweeper thread instead of a new 10 ms timer thread every few counts."""

from __future__ import annotations

import threading
import time

import pytest

from app.errors import ApiError
from app.ratelimit import RateLimits, SweptMemoryStorage, build_storage


def test_counting_starts_no_thread_per_count(monkeypatch):
    storage = build_storage("memory://")
    assert isinstance(storage, SweptMemoryStorage)
    time.sleep(0.05)  # the stock constructor's own first timer has run
    started = []
    original = threading.Thread.start

    def counting_start(thread):
        started.append(thread.name)
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    deadline = time.monotonic() + 0.3  # 30 of the stock storage's 10 ms timer periods
    while time.monotonic() < deadline:
        storage.incr("k", 1)
        time.sleep(0.001)
    assert started == ["usher-limits-sweeper"]


def test_the_sweeper_drops_expired_entries():
    storage = SweptMemoryStorage("memory://", sweep_seconds=0.05)
    storage.incr("short", 0.01)
    storage.incr("long", 60)
    deadline = time.monotonic() + 2
    while "short" in storage.storage and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "short" not in storage.storage
    assert storage.get("long") == 1


def test_limits_still_refuse_past_the_budget():
    limits = RateLimits(build_storage("memory://"))
    for _ in range(3):
        limits.hit("test", "3 per minute", "org", "test", "1.2.3.4")
    with pytest.raises(ApiError) as refused:
        limits.hit("test", "3 per minute", "org", "test", "1.2.3.4")
    assert refused.value.error == "rate_limited" and int(refused.value.headers["Retry-After"]) >= 1
    limits.hit("test", "3 per minute", "org", "test", "5.6.7.8")  # another address: its own budget
