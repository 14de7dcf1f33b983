"""Numbers for people: 89.8k parameters, 1.2 MFLOPs, 0.85 ms, a score to 4 decimals.

Tables and summaries print these; JSON always keeps the raw values.
"""

from __future__ import annotations

import math

_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def count(n: float | None) -> str:
    """``89778`` -> ``"89.8k"``, ``3211424`` -> ``"3.21M"``; three significant digits."""
    if n is None:
        return "-"
    for scale, prefix in _PREFIXES:
        if abs(n) >= scale:
            return f"{_three(n / scale)}{prefix}"
    return f"{n:.0f}" if float(n).is_integer() else _three(n)


def flops(n: float | None) -> str:
    """``1_200_000`` -> ``"1.2 MFLOPs"`` (multiply-accumulates counted as the space counts them)."""
    if n is None:
        return "-"
    for scale, prefix in _PREFIXES:
        if abs(n) >= scale:
            return f"{_three(n / scale)} {prefix}FLOPs"
    return f"{n:.0f} FLOPs"


def milliseconds(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{_three(ms)} ms"


def score(x: float | None, digits: int = 4) -> str:
    """A score or proxy value: fixed decimals in the usual range, 4 significant digits beyond."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-" if x is None else str(x)
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}f}" if abs(x) < 10 else f"{x:.{max(1, digits - 2)}f}"


def _three(v: float) -> str:
    """Three significant digits without trailing zeros: 89.8, 3.21, 120, 1.2."""
    text = f"{v:.3g}"
    if "e" in text:  # 3 significant digits of a number >= 1000 would need an exponent
        text = f"{v:.0f}"
    return text
