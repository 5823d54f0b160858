"""Write a small sample of saved outputs in the released ICDPO code's output format (its ``inference_res/*.json``
JSONL: a PRO-format ``prefix`` of tagged turns, the ``candidates`` and the chosen ``infer`` response per line), made
here from vendored hh_harmless_mini evaluation rows (their dialogues as the released code reads them, the dataset's
chosen reply as the "generated" response; row 27 is one whose reading differs from the raw dialogue). It is what the
README's `icdpo-eval score` example and tests/test_score.py read; no output of the authors' code is copied.

    python scripts/make_released_sample.py tests/fixtures/released_outputs.jsonl --rows 0,1,2,3,27
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from icdpo_eval.data.hh import split_turns

ROOT = Path(__file__).resolve().parents[1]
TAGS = {"Human": "<|prompter|>", "Assistant": "<|assistant|>"}


def record(row: dict) -> dict:
    turns = split_turns(row["prompt"].rstrip().removesuffix("Assistant:").rstrip())
    reply = split_turns(f"{row['prompt']} {row['chosen']}")[-1][1]
    prefix = [f"{TAGS[speaker]}{text}" for speaker, text in turns] + [TAGS["Assistant"]]
    return {"prefix": [prefix], "suffix": [reply], "meta": {"id": row["id"]},
            "candidates": [{"t": reply}], "infer": {"t": reply, "index": 0}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--rows", default="0,1,2,3,27", help="the evaluation rows (0-based line numbers of eval.jsonl)")
    a = ap.parse_args()
    every = [json.loads(x) for x in (ROOT / "icdpo_eval" / "data" / "hh_harmless_mini" / "eval.jsonl")
             .read_text(encoding="utf-8").splitlines() if x.strip()]
    rows = [every[int(i)] for i in a.rows.split(",")]
    Path(a.out).write_text("".join(json.dumps(record(r), ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
