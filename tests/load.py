"""A small load generator for fault tests: threads that each keep one session alive by
refreshing it in a loop, recording every outcome with its time."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPException  # IncompleteRead: a reply cut off mid-body

from tests.helpers import publishable
from tests.live import http


@dataclass
class Outcome:
    at: float
    status: int | str  # an HTTP status, or the name of a connection error


@dataclass
class SessionClient:
    """Refreshes one session over and over; on any failure retries with the token it last sent."""

    url: str
    pk: str
    refresh_token: str
    outcomes: list[Outcome] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # other calls to make each round: "guest"
    timeout: float = 10  # seconds a request may take before it counts as a TimeoutError

    def step(self) -> None:
        try:
            reply = http("POST", self.url + "/api/v1/auth/refresh", publishable(self.pk),
                         {"refreshToken": self.refresh_token}, timeout=self.timeout)
            status: int | str = reply.status
            if reply.status == 200:
                self.refresh_token = reply.body["refreshToken"]
            elif reply.status != 503:
                status = f"{reply.status}:{(reply.body or {}).get('error')}"
        except (OSError, HTTPException) as exc:
            status = type(getattr(exc, "reason", exc)).__name__
        self.outcomes.append(Outcome(time.monotonic(), status))
        for call in self.extra:
            if call == "guest":
                try:
                    status = http("POST", self.url + "/api/v1/auth/guest", publishable(self.pk),
                                  timeout=self.timeout).status
                except (OSError, HTTPException) as exc:
                    status = type(getattr(exc, "reason", exc)).__name__
                self.outcomes.append(Outcome(time.monotonic(), status))


class Load:
    def __init__(self, clients: list[SessionClient], pause: float = 0.02):
        self.clients, self.pause = clients, pause
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in clients]

    def _run(self, client: SessionClient) -> None:
        while not self._stop.is_set():
            client.step()
            time.sleep(self.pause)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll until `predicate()` holds while the load runs (fault tests wait for what they need to
        have seen, not for a fixed time); returns the moment it held."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"not seen within {timeout} s: {what}"
            time.sleep(0.05)
        return time.monotonic()

    def each_client(self, since: float, successes: int) -> bool:
        """Whether every client's last `successes` outcomes, all at or after `since`, succeeded."""
        return all(len(c.outcomes) >= successes and all(o.at >= since and o.status in (200, 201)
                                                        for o in c.outcomes[-successes:]) for c in self.clients)

    def outcomes(self, start: float = float("-inf"), end: float = float("inf")) -> list[Outcome]:
        return sorted((o for c in self.clients for o in c.outcomes if start <= o.at < end), key=lambda o: o.at)

    def counts(self, start: float = float("-inf"), end: float = float("inf")) -> Counter:
        return Counter(o.status for o in self.outcomes(start, end))


def start_clients(url: str, pk: str, count: int, extra: list[str] | None = None,
                  timeout: float = 10) -> list[SessionClient]:
    clients = []
    for _ in range(count):
        guest = http("POST", url + "/api/v1/auth/guest", publishable(pk)).body
        clients.append(SessionClient(url, pk, guest["refreshToken"], extra=list(extra or []), timeout=timeout))
    return clients
