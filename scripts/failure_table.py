"""Run every class of bad input a new user can hit and print a markdown table: the command, its exit code,
the seconds until it stopped, and the final line it printed (docs/reliability.md holds the last run).

    python scripts/failure_table.py            # ~3 minutes on a 2-core CPU (each lm_eval start is ~10 s)
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def cases(tmp: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    bad_json = tmp / "bad.jsonl"
    bad_json.write_text('{"prompt": "\\n\\nHuman: hi\\n\\nAssistant:", "chosen": "a", "rejected": "b"}\n\n{oops\n')
    empty = tmp / "empty.jsonl"
    empty.write_text("")
    two = tmp / "two.jsonl"
    two.write_text('{"prompt": "\\n\\nHuman: hi\\n\\nAssistant:", "chosen": "a", "rejected": "b"}\n')
    data = tmp / "data" / "hh-rlhf" / "harmless-base"
    data.mkdir(parents=True)
    row = b'{"chosen": "\\n\\nHuman: a\\n\\nAssistant: b", "rejected": "\\n\\nHuman: a\\n\\nAssistant: c"}\n'
    blob = gzip.compress(row * 50)
    (data / "test.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    head = "tasks: [hh_harmless_mini]\nrows:\n"
    (tmp / "bad.yaml").write_text(head + "  - {name: A, model: icdpo\n")
    (tmp / "model.yaml").write_text(head + "  - {name: A, model: hf}\n  - {name: B, model: nope}\n")
    (tmp / "arg.yaml").write_text(head + "  - {name: A, model: icdpo, model_args: {scorr: s}}\n")
    (tmp / "task.yaml").write_text("tasks: [hh_nope]\nrows:\n  - {name: A, model: icdpo}\n")
    lm = [str(BIN / "lm_eval"), "--tasks", "hh_harmless_mini", "--limit", "1", "--model"]
    ie = [str(BIN / "icdpo-eval")]
    no_samples = tmp / "out" / "icdpo"
    no_samples.mkdir(parents=True)
    (no_samples / "results_2026-12-01T00-00-00.0.json").write_text(
        '{"results": {"hh_harmless_mini": {"rm_reward,none": 1.0}}, "config": {"model": "icdpo"}}')
    return [
        ("unknown scorer", [*lm, "icdpo", "--model_args", "scorer=nope"], {}),
        ("option out of range", [*lm, "icdpo", "--model_args", "k=-1"], {}),
        ("unknown model_arg", [*lm, "icdpo", "--model_args", "temprature=0.3"], {}),
        ("unsupported --gen_kwargs key", [*lm, "icdpo", "--gen_kwargs", "repetition_penalty=1.2"], {}),
        ("context over max_length", [*lm, "icdpo", "--model_args", "max_length=64"], {}),
        ("rm setting: no such folder", [*lm, "icdpo", "--metadata", '{"rm": "/nonexistent/rm"}'], {}),
        ("a variable that became a setting", [*lm, "icdpo"], {"ICDPO_RM": "proxy"}),
        ("instructions=released offline", [*lm, "icdpo", "--model_args", "instructions=released"], {}),
        ("pretrained path missing", [*lm, "icdpo", "--model_args", "pretrained=/no/such/model"], {}),
        ("demo_pool file missing", [*lm, "icdpo", "--model_args", "demo_pool=/no/such.jsonl"], {}),
        ("demo_pool bad JSON line", [*lm, "icdpo", "--model_args", f"demo_pool={bad_json}"], {}),
        ("demo_pool empty", [*lm, "icdpo", "--model_args", f"demo_pool={empty}"], {}),
        ("demo_pool rows < k", [*lm, "icdpo", "--model_args", f"demo_pool={two},k=2"], {}),
        ("demo_source bad file", [*lm, "icdpo", "--model_args", f"demo_source={bad_json}"], {}),
        ("truncated .jsonl.gz data", [*lm[:2], "hh_harmless", *lm[3:], "icdpo"], {"ICDPO_DATA_DIR": str(tmp / "data")}),
        ("API teacher as scorer", [*lm, "rm_bon", "--model_args", "teacher=openai:gpt-4"], {}),
        ("adapter folder missing", [*lm, "sft_lora", "--model_args", "adapter=/no/such/adapter"], {}),
        ("RM folder missing", [*lm[:2], "hh_harmless_rank", *lm[3:], "rm", "--model_args", "rm=/no/such/rm"], {}),
        ("rank task without a rank set", [*lm[:2], "hh_harmless_rank", *lm[3:], "icdpo"], {}),
        ("winrate without API key", [*lm[:2], "hh_harmless_mini_winrate", *lm[3:], "icdpo"],
         {"OPENAI_API_KEY": ""}),
        ("spec not YAML", [*ie, "leaderboard", str(tmp / "bad.yaml")], {}),
        ("spec unknown model", [*ie, "leaderboard", str(tmp / "model.yaml")], {}),
        ("spec unknown model_arg", [*ie, "leaderboard", str(tmp / "arg.yaml")], {}),
        ("spec unknown task", [*ie, "leaderboard", str(tmp / "task.yaml")], {}),
        ("spec file missing", [*ie, "leaderboard", "/no/such.yaml"], {}),
        ("compare missing file", [*ie, "compare", "/no/a.csv", "/no/b.csv"], {}),
        ("train unknown task", [*ie, "train", "sft", "--task", "nope", "--out", str(tmp / "t")], {}),
        ("show-prompt doc out of range", [*ie, "show-prompt", "--task", "hh_harmless_mini", "--doc", "100000"], {}),
        ("report of a folder with no results", [*ie, "report", str(tmp / "data")], {}),
        ("report without --log_samples", [*ie, "report", str(no_samples)], {}),
    ]


def main() -> int:
    rows = ["| bad input | exit | seconds | final line |", "|---|---:|---:|---|"]
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for what, cmd, env in cases(tmp):
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, timeout=600,
                                  env={**os.environ, "HF_HUB_OFFLINE": "1", **env})
            secs = time.perf_counter() - t0
            lines = [ln for ln in (proc.stderr + proc.stdout).strip().splitlines() if ln.strip()]
            last = lines[-1].strip() if lines else ""
            last = last.replace(str(tmp), "$TMP").replace("|", "\\|")
            rows.append(f"| {what} | {proc.returncode} | {secs:.1f} | `{last[:220]}` |")
            print(rows[-1], file=sys.stderr, flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
