"""Every documented command runs: the command lines of README.md's and docs/*.md's ```bash blocks are collected
and run as a new user would type them, shrunk to a tiny size (``--limit 1``, 4 new tokens, 1 training step, ...),
offline, on the tiny twins of the embedded models (the point of these commands is that they run, not their
numbers), with a local fake judge standing in for an OpenAI-compatible API.

A command that cannot run here carries a visible tag in its doc, as a trailing comment:

* ``# needs: hub`` / ``# needs: GPU`` / ``# needs: API key`` (the last ones do run here, against the fake judge);
* ``# fails: ...`` : the command demonstrates an error; it must fail with one ``lm_eval: error:`` line;
* ``# run by .ci/run`` : CI runs it as written (this test checks that .ci/run holds the line);
* ``# run by tests/FILE.py`` : that test runs the line itself (an ``accelerate launch``, which must start
  processes); this test checks that the file reads the line from its doc;
* ``# runs the tests`` : the command is the test suite itself.

The commands of each doc run in order, in one temporary folder (a later command may use an earlier one's
output), in this process: lm_eval and icdpo-eval through their entry functions and ``python benchmarks/...``
through ``runpy``, so models load once per session. Training, benchmarks and leaderboards included.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TAGS = ("needs:", "fails:", "run by .ci/run", "run by tests/", "runs the tests")
REPO_DIRS = ("leaderboards/", "benchmarks/", "scripts/", "tests/")


def commands(path: Path) -> list[tuple[str, str]]:
    """(command line, tag) of every command in the doc's ```bash blocks (continuation lines joined)."""
    out, block = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            block = [] if block is None and line.strip() in ("```bash", "```sh") else None
            continue
        if block is None:
            continue
        if out and out[-1][0].endswith("\\"):
            out[-1] = (out[-1][0][:-1] + " " + line.strip(), "")
        elif line.strip() and not line.lstrip().startswith("#"):
            out.append((line.strip(), ""))
    tagged = []
    for cmd, _ in out:
        m = re.search(r"\s#\s*(.*)$", cmd)
        comment = m.group(1) if m else ""
        tag = next((t for t in TAGS if comment.startswith(t)), "")
        tagged.append((cmd, tag + comment[len(tag):] if tag else ""))
    return tagged


def all_commands() -> list[tuple[Path, str, str]]:
    return [(p, c, t) for p in DOCS for c, t in commands(p)]


def test_collects_the_documented_commands():
    cmds = all_commands()
    assert len(cmds) > 25
    heads = {shlex.split(c, comments=True)[0] for _, c, _ in cmds if shlex.split(c, comments=True)}
    assert {"lm_eval", "icdpo-eval", "accelerate"} <= heads
    # the README's first block is what CI installs and tests with
    readme = [c for p, c, _ in cmds if p.name == "README.md"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "awk '/^```bash/" in ci and readme[0].startswith("python3 -m venv .venv")
    for p, c, t in cmds:
        if t.startswith("run by .ci/run"):
            assert c.split("#")[0].strip() in ci, f"{p.name}: {c!r} is tagged but .ci/run does not run it"
        if t.startswith("run by tests/"):
            test_file = ROOT / t.removeprefix("run by ").split()[0]
            start = " ".join(shlex.split(c, comments=True)[:5])
            assert test_file.is_file() and f'_documented("{p.relative_to(ROOT)}", "{start}")' in \
                test_file.read_text(), f"{p.name}: {c!r} is tagged but {test_file.name} does not run it"
    # nothing is tagged for a marker that no run selects
    assert not any("docs_heavy" in c for _, c, _ in cmds)


# -------------------------------------------------------------------------------------------- running them
# one optimizer step on short pairs: TRL's CPU log-prob kernel costs (positions x vocabulary), and Gemma's
# vocabulary is 262k tokens, so a step at 64 tokens costs a fraction of one at 192
TINY_TRAIN = {"--max-steps": 1, "--max-pairs": 8, "--batch-size": 2, "--max-length": 64}


def tiny_spec(path: str) -> str:
    """A leaderboard spec with its adapters trained at :data:`TINY_TRAIN`'s size (a copy next to the run's files;
    the rows, tasks and options are the doc's). Specs without adapters are returned as they are."""
    import yaml

    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not spec.get("adapters"):
        return path
    for opts in spec["adapters"].values():
        opts.update({k.removeprefix("--").replace("-", "_"): v for k, v in TINY_TRAIN.items()})
        opts["save_steps"] = 1
    copy = Path.cwd() / f"tiny_{Path(path).name}"
    copy.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return str(copy)


def shrink(argv: list[str]) -> list[str]:
    """The same command at a tiny size (what the test runs)."""
    out = list(argv)

    def set_flag(flag: str, value: str) -> None:
        if flag in out:
            out[out.index(flag) + 1] = value
        else:
            out.extend([flag, value])

    head = out[0]
    if head == "lm_eval" or out[:2] == ["icdpo-eval", "run"] or "lm_eval" in out:
        set_flag("--limit", "2" if head == "accelerate" else "1")
        if "--gen_kwargs" not in out:
            out += ["--gen_kwargs", "max_gen_toks=4"]
        out = [re.sub(r"max_new_tokens=\d+", "max_new_tokens=4", a) for a in out]
    elif head == "icdpo-eval":
        sub = out[1]
        if sub == "leaderboard":
            set_flag("--limit", "1")
            out[2] = tiny_spec(out[2])
        elif sub == "train":
            for flag, value in TINY_TRAIN.items():
                set_flag(flag, str(value))
        elif sub == "borrow":
            set_flag("--limit", "2")
            set_flag("--max-new-tokens", "4")
            if "--top-p" not in out:  # greedy decoding of the random teacher twin repeats "\n": all empty
                out += ["--top-p", "0.95"]
        elif sub == "build-rank-set":
            set_flag("--n-docs", "2")
            set_flag("--max-new-tokens", "4")
        elif sub == "bench":
            set_flag("--max-new-tokens", "4")
            set_flag("--n-docs", "1")
    elif head == "python" and len(out) > 1 and "benchmarks/" in out[1]:
        set_flag("--max-new-tokens", "4")
        set_flag("--n-docs", "1")
    return out


def prepared(cmd: str) -> tuple[dict[str, str], list[str]]:
    """The command's environment assignments and its argv (embedded paths substituted, repo paths absolute)."""
    from icdpo_eval.config import names

    cmd = re.sub(r"\$\(icdpo-eval models path (\w+)\)", lambda m: names.resolve(f"embedded:{m.group(1)}"), cmd)
    argv = shlex.split(cmd, comments=True)
    env = {}
    if argv and argv[0] == "export":
        k, _, v = argv[1].partition("=")
        return {k: v}, []
    while argv and re.fullmatch(r"[A-Z_]+=.*", argv[0]):
        k, _, v = argv.pop(0).partition("=")
        env[k] = v
    argv = [str(ROOT / a) if a.startswith(REPO_DIRS) else a for a in argv]
    return env, argv


def run(argv: list[str]) -> tuple[int, str]:
    """Run one command in this process (lm_eval, icdpo-eval, python SCRIPT); (exit status, output)."""
    buf = io.StringIO()
    if argv[0] == "python" and len(argv) > 1 and argv[1].endswith(".py"):
        import runpy

        saved = sys.argv
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                sys.argv = argv[1:]
                runpy.run_path(argv[1], run_name="__main__")
                rc = 0
        except SystemExit as e:
            rc = int(e.code or 0) if not isinstance(e.code, str) else 1
        finally:
            sys.argv = saved
        return rc, buf.getvalue()
    if argv[0] in ("lm_eval", "icdpo-eval"):
        saved = sys.argv
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                if argv[0] == "lm_eval":
                    from lm_eval.__main__ import cli_evaluate

                    sys.argv = ["lm_eval", *argv[1:]]
                    cli_evaluate()
                    rc = 0
                else:
                    from icdpo_eval.cli import main

                    rc = main(argv[1:])
        except SystemExit as e:
            rc = int(e.code or 0) if not isinstance(e.code, str) else 1
            buf.write(str(e.code) if isinstance(e.code, str) else "")
        finally:
            sys.argv = saved
        return rc, buf.getvalue()
    raise AssertionError(f"{shlex.join(argv)}: only lm_eval, icdpo-eval and `python SCRIPT.py` run in this process; "
                         "tag the line `# run by tests/FILE.py` (a test that starts processes) or `# needs: ...`")


def run_doc(doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve) -> list[str]:
    """Run the doc's runnable commands in order; returns what ran."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ICDPO_JUDGE_CACHE", str(tmp_path / "judge"))
    judge = None
    ran = []
    cmds = commands(doc)
    if doc.name == "README.md":
        cmds = cmds[2:]  # the two set-up commands: .ci/run executes them, verbatim
    for cmd, tag in cmds:
        if tag.startswith(("run by .ci/run", "run by tests/", "runs the tests")):
            continue
        needs = tag.removeprefix("needs:").replace(" ", "").lower().split(",") if tag.startswith("needs:") else []
        if set(needs) - {"apikey"}:
            continue  # needs the hub or a GPU: tagged, not run here
        env, argv = prepared(cmd)
        if not argv:
            continue  # an `export`: the fake judge's values are used instead
        argv = shrink(argv)
        if judge is None:
            judge = serve(lambda body, n: __import__("fake_openai_server").Reply("A"))
        for k, v in {**env, "OPENAI_API_KEY": "x", "OPENAI_BASE_URL": judge.base_url}.items():
            monkeypatch.setenv(k, v)
        rc, out = run(argv)
        if tag.startswith("fails:"):
            assert rc == 2, f"{doc.name}: {shlex.join(argv)} should fail with one error line\n{out[-2000:]}"
            assert len([ln for ln in out.splitlines() if ln.startswith(("lm_eval: error:", "icdpo-eval"))]) == 1
        else:
            assert rc == 0, f"{doc.name}: {shlex.join(argv)} exited {rc}\n{out[-3000:]}"
        ran.append(shlex.join(argv))
    return ran


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_documented_commands_run(doc, tmp_path, monkeypatch, serve):
    run_doc(doc, tmp_path, monkeypatch, serve)


def test_a_broken_documented_command_is_caught(tmp_path, monkeypatch, serve):
    """Seen red: the line docs/scorers.md held before the names were one vocabulary."""
    doc = tmp_path / "broken.md"
    doc.write_text("```bash\nlm_eval --model rm_bon --model_args teacher=embedded:nosuch,normalize=true "
                   "--tasks hh_harmless_mini_pairs --limit 20\n```\n")
    with pytest.raises(AssertionError, match="exited 2"):
        run_doc(doc, tmp_path, monkeypatch, serve)

