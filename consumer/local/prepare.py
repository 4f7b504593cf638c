"""`python -m consumer.local.prepare`: PostgreSQL up with wal_level=logical (used by `make`)."""

from __future__ import annotations

import os
import sys

from consumer.local.postgres import LocalPostgresError, ensure_logical_decoding

SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def main() -> int:
    try:
        restarted = ensure_logical_decoding(SERVER_URL)
    except LocalPostgresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("PostgreSQL ready (wal_level=logical)" + (", restarted once to apply it" if restarted else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
