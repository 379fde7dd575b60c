"""How numbers and text read in every table of a report (Markdown, HTML, LaTeX alike)."""
from __future__ import annotations

import math
from typing import Any, Sequence

DASH = "—"  # no value: a single seed has no interval, a pending row no mean
UNITS = {"gpu_hours": "GPU-h", "cpu_hours": "CPU-h"}


def number(value: Any, digits: int = 2, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def interval(low: float, high: float) -> str:
    return DASH if not (math.isfinite(low) and math.isfinite(high)) else f"[{low:.2f}, {high:.2f}]"


def hours(value: float) -> str:
    """Three significant digits for small costs (0.0163), grouped digits for large ones (1,234.5)."""
    if not math.isfinite(value):
        return DASH
    return f"{value:,.1f}" if value >= 100 else f"{value:.3g}"


def joined(names: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def commit(sha: str) -> str:
    """A git commit as every page names it: its first 7 hex digits, as ``git log --oneline``."""
    return str(sha)[:7]


def tex(text: str) -> str:
    """LaTeX-escaped text; "->" of a warm-up label becomes an arrow, × and ± math symbols."""
    replacements = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    escaped = "".join(replacements.get(c, c) for c in str(text))
    return (escaped.replace("->", r"$\to$").replace("×", r"$\times$").replace("±", r"$\pm$")
            .replace(DASH, "--"))
