"""The package's environment switches (``LIERE_CPU_KERNEL``, ``LIERE_MALLOC_TUNE``): one meaning of "off"."""

from __future__ import annotations

import os

__all__ = ["turned_off"]


def turned_off(variable: str) -> bool:
    """True when the environment variable is 0, false, no or off (any case, spaces ignored); unset is on."""
    return os.environ.get(variable, "1").strip().lower() in ("0", "false", "no", "off")
