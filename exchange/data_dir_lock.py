"""One holder per data dir: the exclusive lock that picks which ``ibx serve`` process
runs a singleton task (the pipeline sweeper, the risk watch, the Fabric shipper)
when ``--workers N`` starts several."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO

__all__ = ["try_lock"]

logger = logging.getLogger(__name__)


def try_lock(path: Path, what: str) -> IO[bytes] | None:
    """Take an exclusive lock on ``path`` without waiting: the open file holds it until
    it is closed (or the process exits). None when another process holds it, or when
    the file cannot be opened (logged once as a warning naming ``what``)."""
    try:
        handle = path.open("ab")
    except OSError as exc:
        logger.warning("no %s here: cannot open %s: %s", what, path, exc)
        return None
    if os.name == "posix":
        import fcntl

        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return None
    return handle
