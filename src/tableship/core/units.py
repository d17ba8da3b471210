"""Numbers as people read them in messages and views."""

from __future__ import annotations


def human_size(n: float) -> str:
    """``12.3 MiB``: binary units, one decimal (bytes as a whole number)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
