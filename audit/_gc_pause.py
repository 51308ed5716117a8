"""The cyclic garbage collector paused while an export's entries are read or verified.

Each entry allocates a handful of containers (its decoded payload, its typed
model, the parsed entry) and keeps them until the verification ends; none is
in a cycle. With the collector running, their number triggers collection after
collection, each walking what the entries so far left: verifying a million
entries costs far more than ten times a hundred thousand. Inside
:func:`collection_paused` nothing is walked; at its end what the block kept
goes straight to the oldest generation (``gc.freeze()`` then
``gc.unfreeze()``, two list moves), so the young collections that follow do
not walk it either; a full collection, which runs only once the oldest
generation has grown by a quarter, still sees it. Reference counting frees as
always.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collection_paused"]


@contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic collection inside the block; what it kept joins the oldest generation.

    Nested blocks leave the pause to the outermost; a process that froze objects
    itself (``gc.freeze()`` before forking) keeps them frozen.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()
