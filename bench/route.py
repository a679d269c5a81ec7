"""The call route of one OTP verify with a guest upgrade, module by module (issue 26, point 6).

`python -m bench.route` (`--all` for every module of `app`, not only the layers). Drives one
verify through the test client on a fresh SQLite file and profiles the view's call tree: a route
entry is the module of a call that crosses from one module of the layers (`app.api`, `app.grants`,
`app.stores`, `app.services`, `app.plugins`) into another (consecutive entries collapsed); a
"return to a module already left" is an entry whose module the route had already visited.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

LAYERS = ("app.api", "app.grants", "app.stores", "app.services", "app.plugins")


def main() -> None:
    from app import create_app
    from app.cli import upgrade_database
    from tests.helpers import Actions, TenantActions, bearer, publishable, secret

    every = "--all" in sys.argv

    def layer(module: str) -> str | None:
        return module if (every and module.startswith("app.")) or module.startswith(LAYERS) else None

    url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'route.sqlite3'}"
    upgrade_database(url)
    app = create_app({"TESTING": True, "DATABASE_URL": url, "APP_SECRET": "route-" + "x" * 42,
                      "RATELIMIT_STORAGE_URI": "memory://", "ISSUER": "http://usher.test"})
    client = app.test_client()
    org = Actions(app, client).create_org()
    tenant = TenantActions(client, org["keys"]["test"], org["organizationId"])
    tenant.guest()  # the signing keys
    guest = tenant.guest()
    queue = tenant.queue()
    entered = client.post(f"/api/v1/queues/{queue['id']}/enter",
                          headers={**publishable(tenant.pk), **bearer(guest["accessToken"])})
    assert entered.status_code == 200, entered.json
    client.post("/api/v1/auth/otp/request", json={"email": "route@example.com"}, headers=publishable(tenant.pk))
    outbox = client.get("/api/v1/test/otp-messages", headers=secret(tenant.sk)).json["data"]
    code = re.search(r"\b(\d{6,10})\b", outbox[0]["body"]).group(1)  # type: ignore[union-attr]

    route: list[tuple[str, str]] = []
    active = [False]

    def nearest(frame) -> str | None:
        while frame is not None:
            module = layer(frame.f_globals.get("__name__", ""))
            if module:
                return module
            frame = frame.f_back
        return None

    def profiler(frame, event, _arg) -> None:
        name = frame.f_globals.get("__name__", "")
        view = name == "app.api.consumer.otp" and frame.f_code.co_name == "post"
        if event == "call" and view:
            active[0] = True
        if not active[0] or event != "call":
            if event == "return" and view:
                active[0] = False
            return
        callee = layer(name)
        if callee and (not route or (callee != nearest(frame.f_back) and callee != route[-1][0])):
            route.append((callee, frame.f_code.co_name))

    sys.setprofile(profiler)
    response = client.post("/api/v1/auth/otp/verify", json={"email": "route@example.com", "code": code},
                           headers={**publishable(tenant.pk), **bearer(guest["accessToken"])})
    sys.setprofile(None)
    assert response.status_code == 200 and response.json["session"]["guestId"], response.json
    seen: set[str] = set()
    lines, returns = [], 0
    for module, function in route:
        again = module in seen
        returns += again
        seen.add(module)
        lines.append(f"{module}.{function}" + ("  [return]" if again else ""))
    print("\n -> ".join(lines))
    print("returns to a module already left:", returns)


if __name__ == "__main__":
    main()
