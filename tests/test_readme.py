"""The README's first lines are the set-up commands CI runs; keep them true."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_opens_with_install_and_test_commands():
    text = (ROOT / "README.md").read_text().splitlines()
    assert text[2] == "```bash"
    install, tests = text[3], text[4]
    assert 'pip install -e ".[dev]"' in install and "lm_eval --model icdpo --tasks hh_harmless_mini" in install
    assert "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert "README.md" in ci  # CI reads and runs these exact lines


def placeholder_lines(paths) -> list[str]:
    """``path:line: text`` of every line that is only an ALL_CAPS token (>= 6 of [A-Z_]), an unfilled placeholder
    such as ``PROXY_TABLE`` (what ``grep -n '^[A-Z_]\\{6,\\}$'`` prints, also with surrounding blanks)."""
    pattern = re.compile(r"[A-Z_]{6,}")
    return [f"{p.relative_to(ROOT)}:{i}: {line}" for p in paths
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.fullmatch(line.strip())]


def test_readme_and_docs_have_no_unfilled_placeholder():
    paths = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(paths) > 1
    hits = placeholder_lines(paths)
    assert not hits, "unfilled placeholder lines (paste the real content):\n" + "\n".join(hits)
