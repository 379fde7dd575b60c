"""Files that readers in other processes may open at any moment (a study's plan, a report's
pages) are written beside their final name and renamed over it: a reader sees the old file or
the new one, never half of one."""
from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
