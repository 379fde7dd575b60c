"""Where studies are found: the ones shipped in ``ablations/``, and a folder of the user's own
(``--studies DIR``, or ``$STUDIES_DIR`` for every command), so that a study kept outside the
repository is listed by ``--list`` and named like a shipped one. A study in the user's folder
takes the place of a shipped one of the same name: naming the folder is asking for its files.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

from studies import spec
from studies.spec import SpecError

ENV = "STUDIES_DIR"


def folder(option: str | None) -> tuple[Path | None, str | None]:
    """The user's study folder (``--studies``, else ``$STUDIES_DIR``, else none) and the problem
    with it, if it is not a folder."""
    text, where = (option, "--studies") if option is not None else (os.environ.get(ENV), f"${ENV}")
    if text is None:
        return None, None
    path = Path(text)
    if not text or not path.is_dir():
        what = "is a file" if path.is_file() else "is not a folder"
        return None, f"{where} {text or repr('')} {what}; give the folder that holds your study .toml files"
    return path, None


def available(user: Path | None) -> dict[str, Path]:
    """Study name -> file: the shipped ones, then (winning a clash) the user folder's."""
    own = {p.stem: p for p in sorted(user.glob("*.toml")) if not p.name.startswith("_")} if user else {}
    return {**spec.available(), **own}


def resolve(name: str, user: Path | None) -> str:
    """What to load for ``name``: a study of the user's folder as its path; anything else as
    given (``spec.load`` finds shipped studies and paths)."""
    if user is None or Path(name).is_file():
        return name
    studies = available(user)
    if name in studies:
        return str(studies[name])
    close = difflib.get_close_matches(name, studies, n=1)
    hint = f"did you mean {close[0]}?" if close else "see python -m studies.run --list"
    raise SpecError([f"{name}: no such study in {spec.study_dir()} or {user} and no such .toml file; {hint}"])
