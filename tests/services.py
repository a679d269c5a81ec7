"""Exit 0 when the PostgreSQL and Redis given on the command line answer (used by `make test`)."""

import sys

import psycopg
import redis


def main(pg_url: str, redis_url: str) -> int:
    try:
        with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql"), connect_timeout=2):
            pass
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means not available
        print(f"not available: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
