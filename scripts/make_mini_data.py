"""Regenerate the vendored ``icdpo_eval/data/hh_harmless_mini`` set from HH-RLHF harmless-base test.

    python scripts/make_mini_data.py /work/shared/data/hh-rlhf

``SRC`` holds ``harmless-base/test.jsonl.gz`` and ``LICENSE`` (the Anthropic/hh-rlhf layout).
Rows are parsed and length-filtered exactly like :func:`icdpo_eval.data.load_pairs`; then
``random.Random(1234)`` draws 100 evaluation rows and a disjoint demo pool of 1000 rows.
Ids are ``harmless-base/test/<row index in the test file>``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

from icdpo_eval.data import datasets as D

SEED = 1234
N_EVAL = 100
N_POOL = 1000

README = """# hh_harmless_mini

A small, fixed slice of the **Anthropic HH-RLHF harmless-base test split**
(<https://huggingface.co/datasets/Anthropic/hh-rlhf>, `harmless-base/test.jsonl.gz`, 2312 rows),
vendored so that `lm_eval --model icdpo --tasks hh_harmless_mini` runs with no network.

* `eval.jsonl`: {n_eval} evaluation rows (the `hh_harmless_mini` task's documents);
* `pool.jsonl`: {n_pool} demonstration rows (the task's default ICDPO demo pool), disjoint from `eval.jsonl`.

Each line is `{{"prompt", "chosen", "rejected", "id"}}`: `prompt` is the dialogue up to and including
the last `"\\n\\nAssistant:"`, `chosen`/`rejected` the stripped final assistant turns, `id` is
`harmless-base/test/<row index in the original test file>`. Rows were parsed and length-filtered
as in `icdpo_eval.data.datasets` ({n_bad} malformed rows skipped; the length filter, prompt <= 320 and
responses <= 128 tokens of the Gemma-3 tokenizer, kept {n_kept} of the other {n_parsed}),
then drawn with `random.Random({seed})`.
The other test rows (`icdpo_eval.data.heldout_pairs()`) are held out for measuring metrics.

Licence: MIT, Copyright (c) 2022 Anthropic (see `LICENSE`). The data contain offensive content.

Regenerate (byte-identical) with:

    python scripts/make_mini_data.py /path/to/hh-rlhf   # folder with harmless-base/test.jsonl.gz and LICENSE
"""


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            obj = {k: r[k] for k in ("prompt", "chosen", "rejected", "id")}
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="folder with harmless-base/test.jsonl.gz and LICENSE")
    ap.add_argument("--out", type=Path, default=D.MINI_DIR)
    args = ap.parse_args()

    test = args.src / "harmless-base" / "test.jsonl.gz"
    raw = list(D.read_jsonl(test))
    rows = D._parse(raw, str(test), "hh", "harmless-base/test", "skip")
    n_parsed = len(rows)
    rows = D.length_filter(rows, *D.LENGTH_LIMITS["hh-rlhf"], source=str(test))
    rng = random.Random(SEED)
    picked = rng.sample(range(len(rows)), N_EVAL + N_POOL)
    eval_rows = [rows[i] for i in sorted(picked[:N_EVAL])]
    pool_rows = [rows[i] for i in sorted(picked[N_EVAL:])]

    args.out.mkdir(parents=True, exist_ok=True)
    _write(args.out / "eval.jsonl", eval_rows)
    _write(args.out / "pool.jsonl", pool_rows)
    shutil.copyfile(args.src / "LICENSE", args.out / "LICENSE")
    (args.out / "README.md").write_text(
        README.format(
            n_eval=N_EVAL,
            n_pool=N_POOL,
            n_bad=len(raw) - n_parsed,
            n_parsed=n_parsed,
            n_kept=len(rows),
            seed=SEED,
        )
    )
    print(f"{len(raw)} rows, {len(rows)} kept; wrote {N_EVAL} eval + {N_POOL} pool rows to {args.out}")


if __name__ == "__main__":
    main()
