"""Markdown tables and number formatting shared by the entry points and benchmark tables."""

import math
from collections.abc import Sequence
from typing import Any


def fmt(x: Any, digits: int = 3) -> str:
    """Compact number: 3 significant digits, scientific below 1e-3 and from 1e4; '-' for None/NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return str(x)
    if isinstance(x, bool | str):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if 10**digits <= abs(x) < 1e4:
        return f"{x:.0f}"
    return f"{x:.{digits}g}" if 1e-3 <= abs(x) < 1e4 or x == 0 else f"{x:.{digits - 1}e}"


def mean_std(values: Sequence[float], digits: int = 3) -> str:
    """'m ± s' over seeds, or just 'm' for a single value."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    m = sum(values) / len(values)
    if len(values) == 1:
        return fmt(m, digits)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / len(values))
    return f"{fmt(m, digits)} ± {fmt(s, 2)}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; cells are str()-ed (format numbers with `fmt` first)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
