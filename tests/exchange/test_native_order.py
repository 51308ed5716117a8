"""Every ibx entry point survives loading both native libraries (TenSEAL and regopy)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "code",
    [
        "import exchange.cli",
        "import exchange, regopy, tenseal",
        "import exchange, policies, mpc",
        "import exchange, mpc, policies",
    ],
)
def test_entry_points_load_both_native_libraries(code: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_the_trap_is_real_without_the_ordering() -> None:
    """Documents why exchange/_native_order.py exists; if this starts passing, drop the hack."""
    done = subprocess.run(
        [sys.executable, "-c", "import regopy, tenseal"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
