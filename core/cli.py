"""What every command of the project shares on its command line: ``--profile`` (a shipped
profile of ``core.profiles`` or a profile file's path), ``--data PATH`` (a data set recognised by
its layout), repeatable ``--set KEY=VALUE`` config overrides, and one way to refuse input.

A command refuses bad input before any work and before it creates anything, the same way whichever
command it is: one line on stderr naming the problem and the fix, starting ``error:`` (a study
file's problems start with the file instead, as a compiler names the file it cannot compile),
exit status 2, no traceback and no usage text. So the same mistake (``--set epochs``) reads the
same in ``core.train``, ``core.baselines``, ``studies.run`` and ``benchmarks.run`` (``reports.build``
and ``core.export`` refuse through it too); all the bad
``--set`` options of one command line are named in that one line, so they are fixed in one round.
The paths a command will write, maybe only hours later, are checked up front for the same reason.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn, Sequence

from core import profiles
from core.config import field_names, unknown_key_message
from core.preflight import LAYOUTS
from core.typed import ConfigError, parse_assignment

REFUSED = 2  # the exit status of refused input, argparse's own


class UsageError(ConfigError):
    """The command line itself is wrong: an unknown option, a missing or malformed value."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose refusals are raised as ``UsageError``, for the command to refuse like any
    other bad input (argparse would print its usage text and exit from inside ``main``)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def add_profile(parser: argparse.ArgumentParser, default: str | None = "tiny", help: str | None = None) -> None:
    """``--profile NAME|PATH``, read as ``core.profiles.resolve`` does: a shipped name, or a
    file's absolute path (a relative one is relative to where the command was started)."""
    shipped = ", ".join(profiles.PROFILES)
    parser.add_argument("--profile", default=default, type=_profile, metavar="NAME|FILE",
                        help=f"{help or f'scale to run at (default: {default})'}: {shipped}, or a profile .toml file")


def add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", metavar="PATH", help=f"data set folder, recognised by its layout: {LAYOUTS}")


def data_overrides(path: str | None) -> dict[str, str]:
    """``--data PATH`` as config overrides: the folder, and ``data.name = auto`` so that what it
    holds is recognised (a profile's own ``data.name`` is for its own ``data.path``). A
    ``--set data.name=...`` given with it applies after these, so it wins."""
    if path is None:
        return {}
    if not path:
        raise ConfigError("--data '': give the data set's folder")
    return {"data.path": path, "data.name": "auto"}


def add_set(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help + " (repeatable)")


def assignments(texts: Sequence[str], check: Callable[[str], str | None] | None = None,
                option: str = "--set") -> dict[str, Any]:
    """``--set KEY=VALUE`` options as ``{key: value}``, values read as ``core.typed`` reads them.

    Raises ``ConfigError`` with one line naming every bad option: not KEY=VALUE, a key that
    ``check`` refuses (by default: not a config key) or a key given twice with different values.
    """
    check = check or config_key_problem
    values: dict[str, Any] = {}
    problems: list[str] = []
    for text in texts:
        try:
            key, value = parse_assignment(text)
        except ConfigError:
            problems.append(f"{option} {text}: write KEY=VALUE, e.g. {option} epochs=20")
            continue
        problem = check(key)
        if problem:
            problems.append(f"{option} {key}: {problem}")
        elif key in values and values[key] != value:
            problems.append(f"{option} {key}: given twice ({values[key]!r} and {value!r}); keep one")
        values[key] = value
    if len(problems) > 1:
        raise ConfigError(f"{len(problems)} bad {option} options: " + " | ".join(problems))
    if problems:
        raise ConfigError(problems[0])
    return values


def config_key_problem(key: str) -> str | None:
    """Why ``key`` is not a key of ``DINOConfig`` (the nearest keys named), or None."""
    return None if key in field_names() else unknown_key_message(key)


def refuse(problems: str | Iterable[str], files: Iterable[str] = ()) -> int:
    """Print each problem as one line on stderr, ``error: `` first unless it starts with the file
    it is about (one of ``files``), and return the exit status of refused input."""
    located = tuple(files)
    for line in [problems] if isinstance(problems, str) else problems:
        print(line if located and line.startswith(located) else f"error: {line}", file=sys.stderr)
    return REFUSED


def folder_problem(text: str, option: str, writing: bool = True) -> str | None:
    """Why ``text`` cannot be the folder ``option`` names (empty, a file, or, if ``writing``,
    not creatable); None if it can."""
    if not text:
        return f"{option} '': give a folder"
    path = Path(text)
    if path.exists() and not path.is_dir():
        return f"{option} {path} is a file; give a folder"
    return _writable(path, option) if writing else None


def file_problem(text: str, option: str, writing: bool = True) -> str | None:
    """Why ``text`` cannot be the file ``option`` names (empty, a folder, or, if ``writing``,
    not creatable); None if it can."""
    if not text:
        return f"{option} '': give a file"
    path = Path(text)
    if path.is_dir():
        return f"{option} {path} is a folder; give a file"
    return _writable(path.parent, option) if writing else None


def _writable(folder: Path, option: str) -> str | None:
    """Whether ``folder`` exists or can be made, and can be written, tried with a nameless file in
    its nearest existing ancestor (``os.access`` says yes to root, even on a read-only mount)."""
    ancestor = next(p for p in (folder.absolute(), *folder.absolute().parents) if p.exists())
    if not ancestor.is_dir():
        return f"{option}: {ancestor} is a file, so {folder} cannot be a folder; give another path"
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as error:
        return f"{option}: cannot write in {ancestor} ({error.strerror}); give a place you can write to"
    return None


def _profile(name: str) -> str:
    try:
        return profiles.resolve(name)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
