"""The README's first lines are the set-up commands CI runs; keep them true."""

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
