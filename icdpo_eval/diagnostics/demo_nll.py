"""``icdpo-eval demo-nll``: the base model's NLL on demonstrations of each source (the paper's Appendix E).

    icdpo-eval demo-nll --base X --sources raw,demos.jsonl --task hh_harmless_mini --out demo_nll.png

For each source (``raw`` = the demo pool's own chosen responses; a JSONL path = teacher-borrowed
responses, rows with ``chosen`` and ``prompt``), the mean-reduced token NLL of each demo's response
given its prompt, ``−log π(y | x) / |y|``, from the base model. Prints mean / median / std per source
and saves an overlaid histogram. A smaller NLL means the demos are closer to the base model's own
distribution (the paper's explanation of why LLaMA2-chat demos help more than GPT-3.5's).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from tqdm import tqdm

from icdpo_eval.data.hh import DataError


def load_source(source: str, pool: list[dict]) -> list[tuple[str, str]]:
    if source == "raw":
        return [(r["prompt"], r["chosen"]) for r in pool]
    from icdpo_eval.data.datasets import load_pairs_file

    path = Path(source)
    if not path.is_file():
        raise DataError(f"--sources: {source!r} is neither 'raw' nor an existing JSONL file")
    import json

    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if "prompt" in row and "chosen" in row:
            if not str(row["chosen"]).strip():
                raise DataError(f"{path}:{n}: empty 'chosen' response")
            out.append((row["prompt"], row["chosen"]))
        else:  # raw HH transcripts
            out += [(r["prompt"], r["chosen"]) for r in load_pairs_file(str(path))]
            break
    return out


def demo_nll(engine, pairs: list[tuple[str, str]], batch: int = 8) -> list[float]:
    """Mean per-token NLL of each response given its prompt."""
    out: list[float] = []
    for s in tqdm(range(0, len(pairs), batch), desc="demo NLL"):
        chunk = pairs[s:s + batch]
        conts = [" " + y.strip() for _, y in chunk]
        lps = engine.logprobs([p for p, _ in chunk], [[c] for c in conts])
        for (lp,), c in zip(lps, conts):
            out.append(-lp / max(1, len(engine.encode_continuation(c))))
    return out


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo-nll", help="base-model NLL of demos per source (paper Appendix E), with a histogram")
    p.add_argument("--base", default="embedded:base", help="base model: hub name, folder or embedded:base "
                   "(default, Gemma-3-270M)")
    p.add_argument("--sources", default="raw", help="comma-separated: raw and/or borrowed-demo JSONL files")
    p.add_argument("--task", default="hh_harmless_mini", help="whose default demo pool 'raw' means")
    p.add_argument("--demo-pool", default=None, help="demo pool spec or JSONL instead of the task's")
    p.add_argument("--limit", type=int, default=200, help="demos per source (first N)")
    p.add_argument("--out", default="demo_nll.png", help="histogram PNG")


def main(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from icdpo_eval.config import names
    from icdpo_eval.engine import Engine
    from icdpo_eval.method.demos import DemoStore

    names.check_model_name("--base", args.base)
    pool = DemoStore(args.demo_pool).pool(args.task)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    data = {s: load_source(s, pool)[: args.limit] for s in sources}
    engine = Engine.load(names.resolve(args.base))
    nll = {s: demo_nll(engine, pairs) for s, pairs in data.items() if pairs}
    print(f"{'source':40s} {'n':>5s} {'mean':>7s} {'median':>7s} {'std':>6s}")
    for s, v in nll.items():
        print(f"{s[-40:]:40s} {len(v):5d} {statistics.fmean(v):7.3f} {statistics.median(v):7.3f} "
              f"{statistics.pstdev(v):6.3f}")
    fig, ax = plt.subplots(figsize=(6, 4))
    for s, v in nll.items():
        ax.hist(v, bins=30, alpha=0.5, label=f"{Path(s).name} (mean {statistics.fmean(v):.2f})")
    ax.set_xlabel("mean token NLL of the demo response under the base model")
    ax.set_ylabel("demos")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"histogram: {args.out}")
    return 0
