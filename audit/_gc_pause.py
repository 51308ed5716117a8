"""The cyclic garbage collector paused while an export's entries are read or parsed.

Each entry allocates a handful of containers and none is in a cycle; with the
collector running, the full collections their number triggers walk every
entry read so far, and reading or parsing a million entries grows quadratic.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collection_paused"]


@contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic collection inside the block (reference counting still frees)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
