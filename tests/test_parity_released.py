"""Parity with the released ICDPO code's own outputs (github F2-Song/ICDPO@22f9ee2, run as published on documents
70-72 of hh_harmless_mini; the scores are of the REAL embedded Gemma-3-270M, so that test is marked ``real``; the
contexts need only the tokenizer, which the tiny twin shares: ../shared/fidelity/released_reference.json, not a
re-implementation of ours).

With ``instructions=`` a file holding the released instruction lines (read from the reference at test time: the
package ships no copy) and the default ``dialogue=pro``, ``--model icdpo`` must build the released contexts byte for
byte with the same demos, and its S and Ŝ of the reference's three candidates must equal the released scores to
1e-4, on the loglikelihood path and on the generation path (the candidates replayed through the sampler, so the
positive term is the sampling pass's own log-probs). Seen red: ``dialogue=verbatim`` breaks document 72 (its demo
harmless-base/test/442 keeps a paragraph the released reading drops); the default instruction lines break every
context.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import SHARED_DATA, require_shared

from icdpo_eval.diagnostics.show_prompt import contexts, load_doc

TASK = "hh_harmless_mini"
REFERENCE = SHARED_DATA.parent / "fidelity" / "released_reference.json"
# fp32 log-prob sums of ~100 tokens: the CPU's kernels (AVX2 / AVX-512, its BLAS blocking) move them in the last
# bits; measured against the reference: 5e-5 on the machine that built it, 1.7e-4 on a Xeon with AVX-512. The
# differences this test exists to catch are 0.1-0.9 nats (instruction lines, dialogue preparation).
TOL = 5e-4


@pytest.fixture(scope="module")
def ref() -> dict:
    return json.loads(require_shared(REFERENCE).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def released_lines(ref, tmp_path_factory) -> str:
    """A file with the released instruction lines, as a user would pass it (``instructions=FILE``)."""
    path = tmp_path_factory.mktemp("instructions") / "released.json"
    lines = ref["released_instruction_lines"]
    path.write_text(json.dumps({"positive": lines["pos"], "negative": lines["neg"]}), encoding="utf-8")
    return str(path)


def _contexts(**model_args) -> dict[int, dict]:
    from icdpo_eval.models.icdpo import ICDPOLM

    view = ICDPOLM.preview(scorer="s_hat", **model_args)
    return {d: contexts(view, TASK, {**load_doc(TASK, d, view.dialogue), "_doc": d}) for d in (70, 71, 72)}


def test_contexts_are_the_released_code_s_byte_for_byte(ref, released_lines):
    ours = _contexts(instructions=released_lines)
    assert [d["hh_harmless_mini_doc"] for d in ref["documents"]] == [70, 71, 72]
    for doc in ref["documents"]:
        got = ours[doc["hh_harmless_mini_doc"]]
        want = doc["released_contexts_pro"]
        assert got["demos"] == doc["demo_ids_in_context_order"]
        assert got["contexts"]["positive"] == want["pos"]
        assert got["contexts"]["negative"] == want["neg"]
        assert got["contexts"]["zero_shot"] == want["base"]
        assert got["instructions_sha256"] != "ours" and got["instructions_source"].startswith("file ")


def test_the_planted_changes_turn_it_red(ref, released_lines):
    """The two differences the parity is about, each seen to break it."""
    verbatim = _contexts(instructions=released_lines, dialogue="verbatim")
    differ = {d["hh_harmless_mini_doc"] for d in ref["documents"]
              if verbatim[d["hh_harmless_mini_doc"]]["contexts"]["negative"] != d["released_contexts_pro"]["neg"]}
    assert differ == {72}  # document 72's demo harmless-base/test/442 loses a paragraph in the released reading
    ours = _contexts()  # the default instruction lines: our own wording
    for doc in ref["documents"]:
        got = ours[doc["hh_harmless_mini_doc"]]["contexts"]
        assert got["positive"] != doc["released_contexts_pro"]["pos"]
        assert got["negative"] != doc["released_contexts_pro"]["neg"]
        assert got["zero_shot"] == doc["released_contexts_pro"]["base"]  # no instruction line in it


def _requests(doc: int, row: dict, candidates: list[str]) -> list:
    return [SimpleNamespace(args=(row["prompt"], " " + c), task_name=TASK, doc=row, doc_id=doc) for c in candidates]


def _generate_with(lm, doc: int, row: dict, candidates: list[str]) -> dict:
    """The generation path with the sampler replaying ``candidates`` (every log-prob computed as in sampling);
    returns the document's journal record (candidates, scores, chosen index)."""
    real = lm.engine.sample

    def replay(contexts, n, **kw):
        assert n == len(candidates) == 3 and len(contexts) == 1
        forced = [lm.engine.encode_continuation(" " + c) for c in candidates]
        return real(contexts, n, forced=forced, **kw)

    lm.engine.sample = replay
    try:
        gk = {"until": [], "do_sample": True, "top_p": 0.8, "max_gen_toks": 128}
        lm.generate_until([SimpleNamespace(args=(row["prompt"], gk), task_name=TASK, doc=row, doc_id=doc)],
                          disable_tqdm=True)
    finally:
        lm.engine.sample = real
    (record,) = [r for r in lm.journal().entries.values() if r["doc_id"] == doc]
    return record


@pytest.mark.real  # the released code's scores are of the real Gemma-3-270M weights
@pytest.mark.parametrize("scorer,key", [("s", "S"), ("s_hat", "Sh")])
def test_scores_equal_the_released_code_s(ref, released_lines, scorer, key):
    from icdpo_eval.models.icdpo import ICDPOLM

    lm = ICDPOLM(scorer=scorer, instructions=released_lines, dtype="float32", device="cpu")
    verbatim = ICDPOLM(scorer=scorer, instructions=released_lines, dialogue="verbatim", dtype="float32",
                       device="cpu")
    same_contexts = _contexts(instructions=released_lines, dialogue="verbatim")
    pro_contexts = _contexts(instructions=released_lines)
    for doc in ref["documents"]:
        d, cands = doc["hh_harmless_mini_doc"], doc["candidates"]
        row = load_doc(TASK, d)
        want = doc["released_pro"][key]
        # the loglikelihood path (what a multiple-choice task asks)
        got = [v for v, _ in lm.loglikelihood(_requests(d, row, cands), disable_tqdm=True)]
        assert max(abs(a - b) for a, b in zip(got, want["score"], strict=True)) < TOL, (d, got, want["score"])
        # the generation path, its positive term reused from the sampling pass: on the last document (72, where the
        # two dialogue readings differ); the loglikelihood path above computes the same terms on every document
        if doc is ref["documents"][-1]:
            rec = _generate_with(lm, d, row, cands)
            assert rec["candidates"] == cands
            assert max(abs(a - b) for a, b in zip(rec["scores"], want["score"], strict=True)) < TOL, (d, rec)
            assert rec["index"] == want["argmax"]
        # dialogue=verbatim reproduces the released code run on verbatim turns, and differs on document 72; where
        # both readings build the same contexts (documents 70, 71) the released verbatim scores equal its pro ones
        if same_contexts[d]["contexts"] == pro_contexts[d]["contexts"]:
            plain = doc["released_verbatim_turns"][key]["score"]
            assert max(abs(a - b) for a, b in zip(plain, want["score"])) < TOL
            continue
        plain = [v for v, _ in verbatim.loglikelihood(_requests(d, row, cands), disable_tqdm=True)]
        assert max(abs(a - b) for a, b in zip(plain, doc["released_verbatim_turns"][key]["score"])) < TOL
        if key == "Sh" and d == 72:
            assert max(abs(a - b) for a, b in zip(plain, want["score"])) > 0.1  # seen red without dialogue=pro


def test_reference_file_is_the_released_code_s(ref):
    """What the reference says about itself: the pinned commit we fetch the instruction lines from."""
    from icdpo_eval.method.instructions import RELEASED, RELEASED_COMMIT, RELEASED_REPO, _sha

    assert ref["released_code"]["repo"] == RELEASED_REPO and ref["released_code"]["commit"] == RELEASED_COMMIT
    lines = ref["released_instruction_lines"]
    assert (_sha(lines["pos"]), _sha(lines["neg"])) == (RELEASED["hh"].positive_sha256, RELEASED["hh"].negative_sha256)
    assert Path(REFERENCE).is_file()
