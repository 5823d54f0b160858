"""Rewrite the generated tables of README.md and docs/*.md from their declarations (icdpo_eval.config.options).

    python scripts/sync_docs.py          # rewrite in place
    python scripts/sync_docs.py --check  # exit 1 if any block differs (tests/test_options.py does the same)

A generated block is the text between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``; NAME is a
key of :func:`all_blocks`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- generated: (?P<name>[^>]+?) -->\n)(?P<body>(?:(?!<!-- ).*?\n)?)(<!-- end generated -->)",
                   re.S)


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def sync(text: str, blocks: dict[str, str]) -> tuple[str, list[str]]:
    """``text`` with every generated block rewritten, and the names of the blocks that differed."""
    stale: list[str] = []

    def repl(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in blocks:
            raise SystemExit(f"unknown generated block {name!r}; known: {', '.join(blocks)}")
        if m.group("body") != blocks[name] + "\n":
            stale.append(name)
        return m.group(1) + blocks[name] + "\n" + m.group(4)

    return BLOCK.sub(repl, text), stale


def all_blocks() -> dict[str, str]:
    """Every generated block: the options' (:func:`icdpo_eval.config.options.generated_blocks`) and the commands'
    declared as dataclasses (train, borrow, build-rank-set: :mod:`icdpo_eval.config.declared`)."""
    sys.path.insert(0, str(ROOT))
    from icdpo_eval.baselines.train import options_table
    from icdpo_eval.config.declared import options_table as table
    from icdpo_eval.config.options import generated_blocks
    from icdpo_eval.prepare.borrow import BorrowOptions
    from icdpo_eval.prepare.rank_set import RankSetOptions

    return {**generated_blocks(), "train options": options_table(), "borrow options": table(BorrowOptions),
            "build-rank-set options": table(RankSetOptions)}


def main(argv: list[str]) -> int:
    blocks = all_blocks()
    bad = 0
    for path in doc_files():
        text = path.read_text(encoding="utf-8")
        new, stale = sync(text, blocks)
        if stale:
            bad += 1
            print(f"{path.relative_to(ROOT)}: {', '.join(stale)} {'differ' if '--check' in argv else 'rewritten'}")
            if "--check" not in argv:
                path.write_text(new, encoding="utf-8")
    return 1 if bad and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
