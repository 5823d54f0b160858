"""How far icdpo-eval's defaults are from the released code's contexts, measured (docs/fidelity.md).

    python benchmarks/fidelity_gap.py --reference ../shared/fidelity/released_reference.json --docs 0:20

Two differences can move a score: the instruction lines (ours by default; the released ones with
``instructions=released`` or a file) and the dialogue preparation (``dialogue=pro``, the default, vs ``verbatim``).
For each document of ``--docs`` (rows of ``hh_harmless_mini``, other than the reference's 70-72) the embedded
base model samples 3 candidates under the default contexts; each candidate is then scored by S and Ŝ under
(a) the defaults, (b) the released instruction lines (read from ``--reference``, or fetched with
``instructions=released``) and (c) the released lines with ``dialogue=verbatim``. The script prints, per scorer,
the largest and the mean |score difference| of (a) and (c) from (b) in nats, and how often the chosen candidate
(the argmax) changes. On the reference's own documents (``--reference``) it also prints the defaults' gap from the
scores the released code itself computed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TASK = "hh_harmless_mini"


def _range(text: str) -> list[int]:
    a, _, b = text.partition(":")
    return list(range(int(a), int(b)))


def score(lm, row: dict, candidates: list[str]) -> list[float]:
    reqs = [SimpleNamespace(args=(row["prompt"], " " + c), task_name=TASK, doc=row, doc_id=0) for c in candidates]
    return [v for v, _ in lm.loglikelihood(reqs, disable_tqdm=True)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", default=str(ROOT.parent / "shared" / "fidelity" / "released_reference.json"))
    ap.add_argument("--docs", default="0:20", help="document range a:b of hh_harmless_mini (default 0:20)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--n-docs", type=int, default=None, help="use only the first N documents of --docs")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    args = ap.parse_args(argv)

    from icdpo_eval.diagnostics.show_prompt import load_doc
    from icdpo_eval.engine import stable_seed
    from icdpo_eval.method.prompts import postprocess
    from icdpo_eval.method.scorers import positive_context
    from icdpo_eval.models.icdpo import ICDPOLM

    ref = json.loads(Path(args.reference).read_text()) if Path(args.reference).is_file() else None
    if ref is not None:
        lines = ref["released_instruction_lines"]
        tmp = Path(tempfile.mkdtemp()) / "released.json"
        tmp.write_text(json.dumps({"positive": lines["pos"], "negative": lines["neg"]}))
        released = str(tmp)
    else:
        released = "released"
    docs = _range(args.docs)[: args.n_docs]
    out: dict = {"docs": [docs[0], docs[-1] + 1], "n_docs": len(docs), "max_new_tokens": args.max_new_tokens}
    for scorer in ("s", "s_hat"):
        default = ICDPOLM(scorer=scorer, dtype="float32", device="cpu", resume=False)
        exact = ICDPOLM(scorer=scorer, instructions=released, dtype="float32", device="cpu", resume=False)
        plain = ICDPOLM(scorer=scorer, instructions=released, dialogue="verbatim", dtype="float32", device="cpu",
                        resume=False)
        d_default, d_plain, flips_default, flips_plain = [], [], 0, 0
        params = default.sampling_params({"max_gen_toks": args.max_new_tokens, "top_p": 0.8}, TASK)
        for d in docs:
            row = load_doc(TASK, d)
            prompt = default.prepare(TASK, row["prompt"])
            demos = default.retrieve(TASK, [prompt])[0]
            (samples,) = default.engine.sample([positive_context(prompt, demos, default.template(TASK))], 3,
                                               params=params, seeds=[stable_seed(default.seed, prompt)])
            cands = [postprocess(s.text, params.stop) for s in samples]
            a, b, c = score(default, row, cands), score(exact, row, cands), score(plain, row, cands)
            d_default += [abs(x - y) for x, y in zip(a, b)]
            d_plain += [abs(x - y) for x, y in zip(c, b)]
            flips_default += max(range(3), key=a.__getitem__) != max(range(3), key=b.__getitem__)
            flips_plain += max(range(3), key=c.__getitem__) != max(range(3), key=b.__getitem__)
        res = {"instructions_max": max(d_default), "instructions_mean": statistics.fmean(d_default),
               "instructions_argmax_changed": flips_default, "dialogue_max": max(d_plain),
               "dialogue_mean": statistics.fmean(d_plain), "dialogue_argmax_changed": flips_plain}
        if ref is not None:
            key = {"s": "S", "s_hat": "Sh"}[scorer]
            gaps = [abs(x - y) for doc in ref["documents"]
                    for x, y in zip(score(default, load_doc(TASK, doc["hh_harmless_mini_doc"]), doc["candidates"]),
                                    doc["released_pro"][key]["score"])]
            res["defaults_vs_released_code_max"] = max(gaps)
        out[scorer] = res
        print(f"{scorer:6s} our instruction lines vs the released ones: max |Δ| {res['instructions_max']:.3f}, "
              f"mean {res['instructions_mean']:.3f} nats, argmax changed on {flips_default} of {len(docs)} documents; "
              f"dialogue=verbatim vs pro: max {res['dialogue_max']:.3f}, mean {res['dialogue_mean']:.3f}, argmax "
              f"changed on {flips_plain}"
              + (f"; defaults vs the released code on its documents 70-72: max "
                 f"{res['defaults_vs_released_code_max']:.3f}" if ref is not None else ""))
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
