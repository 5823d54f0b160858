"""A command's options declared once, as a dataclass: its fields are the CLI (transformers' ``HfArgumentParser``:
``--max-steps`` and ``--max_steps`` alike, the help from each field), its ``__post_init__`` is the validation every
caller gets (the CLI, Python, a leaderboard spec), and :func:`options_table` is its table in the docs
(``scripts/sync_docs.py``). ``icdpo-eval train``, ``borrow`` and ``build-rank-set`` are declared this way."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, field, fields
from typing import Any


def opt(default: Any, help: str) -> Any:
    """A declared option: its default (a callable: a factory) and its help."""
    if callable(default) and not isinstance(default, str):
        return field(default_factory=default, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def required(help: str) -> Any:
    return field(metadata={"help": help})


def add_parser(subparsers: Any, name: str, options: type, **kwargs: Any) -> argparse.ArgumentParser:
    """The subcommand ``name`` with one flag per field of the dataclass ``options``."""
    from transformers import HfArgumentParser

    return subparsers.add_parser(name, parents=[HfArgumentParser(options, add_help=False)],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def from_args(options: type, args: argparse.Namespace, **extra: Any) -> Any:
    """The dataclass ``options`` built (and so checked) from the parsed flags."""
    return options(**{f.name: getattr(args, f.name) for f in fields(options)}, **extra)


def options_table(options: type, shown: dict[str, str] | None = None) -> str:
    """The docs' table of ``options`` (``shown``: a default as the docs show it, where the value would mislead)."""
    shown = shown or {}
    lines = ["| option | default | meaning |", "|---|---|---|"]
    for f in fields(options):
        default = f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default
        text = shown.get(f.name) or ("required" if default is MISSING else "–" if default is None
                                     else '""' if default == "" else " ".join(default) if isinstance(default, list)
                                     else str(default).lower() if isinstance(default, bool) else str(default))
        doc = f.metadata["help"].replace(" (%(default)s)", "").replace("%(default)s; ", "").replace("|", "\\|")
        lines.append(f"| `--{f.name.replace('_', '-')}` | {text} | {doc} |")
    return "\n".join(lines)
