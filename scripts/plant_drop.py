"""Plant a real drop in a copy of a finished leaderboard: the statistical gate must fail on it (``.ci/run``).

    python scripts/plant_drop.py LB OUT --row ICDPO --by 0.05

copies ``LB/leaderboard.csv`` and ``LB/documents.jsonl`` to ``OUT`` with every reward of ``--row`` lowered by
``--by`` (raw reward units; the table's values are x100, so its ``value`` drops by 100 x ``--by``). Everything else
is unchanged, so ``icdpo-eval compare OUT BASELINE.csv --ci --paired BASELINE_DOCS.jsonl`` must exit 1 naming the row:
a gate that passes it cannot see a drop of that size.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lb", type=Path, help="a finished leaderboard folder")
    ap.add_argument("out", type=Path, help="where the planted copy goes")
    ap.add_argument("--row", required=True, help="the row whose rewards drop")
    ap.add_argument("--by", type=float, default=0.05, help="raw reward units per document (default 0.05)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    docs, hit = [], 0
    for line in (args.lb / "documents.jsonl").read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        if d["row"] == args.row and d["reward"] is not None:
            d["reward"] -= args.by
            hit += 1
        docs.append(json.dumps(d, ensure_ascii=False))
    if not hit:
        raise SystemExit(f"plant_drop: no document of row {args.row!r} in {args.lb / 'documents.jsonl'}")
    (args.out / "documents.jsonl").write_text("\n".join(docs) + "\n", encoding="utf-8")
    with open(args.lb / "leaderboard.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        if r["row"] == args.row:
            for k in ("value", "ci_low", "ci_high"):
                if r[k]:
                    r[k] = f"{float(r[k]) - 100 * args.by:.6f}"
    with open(args.out / "leaderboard.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"plant_drop: {hit} documents of row {args.row!r} lowered by {args.by} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
