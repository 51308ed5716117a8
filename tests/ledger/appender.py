"""A real appending process for the crash test: prints each acknowledged index, flushed."""

from __future__ import annotations

import sys
from pathlib import Path

from core.events import Event
from exchange.runtime import Runtime
from exchange.settings import Settings


def main() -> None:
    runtime = Runtime(Settings(data_dir=Path(sys.argv[1])))
    ledger = runtime.ledger
    print("ready", flush=True)
    batch = 0
    while True:
        size = 1 + batch % 50
        recorded = ledger.append(
            [Event("crash.test", "appender", {"batch": batch, "i": i}) for i in range(size)]
        )
        sys.stdout.write("".join(f"{r.index}\n" for r in recorded))
        sys.stdout.flush()
        batch += 1


if __name__ == "__main__":
    main()
