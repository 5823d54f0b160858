"""Preference-pair data: HH-RLHF, SyntheticGPT, the vendored HH mini set and user JSONL files.

Every loader returns rows ``{"prompt", "chosen", "rejected", "id"}`` where ``prompt`` is a
dialogue ending in ``"Assistant:"`` and ``chosen``/``rejected`` are stripped responses.

* **HH-RLHF** (``Anthropic/hh-rlhf``, subsets ``harmless-base``/``helpful-base``): the prompt is
  the transcript up to and including its last ``"\\n\\nAssistant:"`` (kept verbatim, leading
  ``"\\n\\nHuman:"`` included); the responses are the text after it. Chosen and rejected
  transcripts must share that prompt.
* **SyntheticGPT** (``Dahoas/synthetic-instruct-gptj-pairwise``): only a train split exists, so
  it is split 90/5/5 into train/dev/test by a seeded hash of the prompt (seed 42), independent of
  row order. The instruction is formatted as ``"\\n\\nHuman: {prompt}\\n\\nAssistant:"`` so that
  every task's prompt ends with ``"Assistant:"``.
* **hh-rlhf-mini**: 100 eval + 1000 pool rows of the HH-RLHF harmless-base *test* split, vendored
  in ``icdpo_eval/data/hh_harmless_mini`` (see its README; regenerate with
  ``scripts/make_mini_data.py``). The other rows of that test file are held out
  (:func:`heldout_pairs`).

Length filters follow the paper: HH-RLHF keeps prompts <= 320 tokens and responses <= 128
tokens; SyntheticGPT prompts <= 128 and responses <= 200. Tokens are counted with the embedded
Gemma-3-270M tokenizer (:func:`icdpo_eval.data.embedded.base_model_path`), without special tokens,
whatever base model is evaluated, so that the data do not depend on the model.

Local data: when ``$ICDPO_DATA_DIR`` is set, datasets are read only from it, laid out like the
hub repositories: ``hh-rlhf/{harmless-base,helpful-base}/{train,test}.jsonl[.gz]`` and
``synthetic-gpt/train.jsonl[.gz]``. Otherwise they come from the hub through ``datasets``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

from icdpo_eval.data.hh import ASSISTANT, DataError, format_instruction, split_dialogue  # noqa: F401

log = logging.getLogger(__name__)

DATA_ENV = "ICDPO_DATA_DIR"
MINI_DIR = Path(__file__).parent / "hh_harmless_mini"
HH_SUBSETS = ("harmless-base", "helpful-base")
# hub datasets load at a pinned commit (recorded in the tasks' metadata, hence in every results file);
# Dahoas/synthetic-instruct-gptj-pairwise is read at its current head (no pinned commit known to us)
HUB_REVISIONS: dict[str, str] = {"Anthropic/hh-rlhf": "09be8c5bbc57cb3887f3a9732ad6aa7ec602a1fa"}
SYNTHETIC_SPLITS = ("train", "dev", "test")
SYNTHETIC_SEED = 42
# (max prompt tokens, max response tokens), from the paper
LENGTH_LIMITS: dict[str, tuple[int, int]] = {"hh-rlhf": (320, 128), "synthetic-gpt": (128, 200)}

OnError = Literal["raise", "skip"]
Row = dict[str, str]


class TaskData(NamedTuple):
    dataset: str
    subset: str | None
    eval_split: str
    pool_split: str


# lm-eval task name -> where its evaluation rows and its default demo pool come from
TASK_DEFAULTS: dict[str, TaskData] = {
    "hh_harmless": TaskData("hh-rlhf", "harmless-base", "test", "train"),
    "hh_helpful": TaskData("hh-rlhf", "helpful-base", "test", "train"),
    "synthetic_gpt": TaskData("synthetic-gpt", None, "test", "train"),
    "hh_harmless_mini": TaskData("hh-rlhf-mini", None, "eval", "pool"),
}


# --------------------------------------------------------------------------- parsing


def _text_field(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise DataError(f"missing or non-string field {key!r}")
    return value


def parse_hh_row(row: dict[str, Any]) -> tuple[str, str, str]:
    """(prompt, chosen, rejected) from raw HH ``chosen``/``rejected`` transcripts."""
    p_c, chosen = split_dialogue(_text_field(row, "chosen"))
    p_r, rejected = split_dialogue(_text_field(row, "rejected"))
    if p_c != p_r:
        raise DataError("chosen and rejected transcripts differ before their last Assistant turn")
    return p_c, chosen, rejected


def parse_pair_row(row: dict[str, Any]) -> tuple[str, str, str]:
    """(prompt, chosen, rejected) from an already split row (prompt kept verbatim)."""
    prompt = _text_field(row, "prompt")
    if not prompt.strip():
        raise DataError("empty prompt")
    return prompt, _text_field(row, "chosen").strip(), _text_field(row, "rejected").strip()


def _parse(
    rows: Iterable[dict[str, Any]],
    source: str,
    kind: Literal["hh", "pair", "synthetic", "auto"],
    id_prefix: str,
    on_error: OnError,
) -> list[Row]:
    out: list[Row] = []
    skipped: list[str] = []
    for i, row in enumerate(rows):
        try:
            if isinstance(row, _BadLine):
                raise DataError(str(row))
            if not isinstance(row, dict):
                raise DataError(f"not a JSON object: {type(row).__name__}")
            k = kind if kind != "auto" else ("pair" if "prompt" in row else "hh")
            if k == "hh":
                prompt, chosen, rejected = parse_hh_row(row)
            else:
                prompt, chosen, rejected = parse_pair_row(row)
                if k == "synthetic":
                    prompt = format_instruction(prompt)
            if not chosen or not rejected:
                raise DataError(f"empty {'chosen' if not chosen else 'rejected'} response")
        except DataError as e:
            reason = f"{source} row {i}: {e}"
            if on_error == "raise":
                raise DataError(reason) from None
            skipped.append(reason)
            continue
        rid = row.get("id") if isinstance(row.get("id"), str) else f"{id_prefix}/{i}"
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "id": rid})
    if skipped:
        log.warning("skipped %d malformed rows of %s: first: %s", len(skipped), source, skipped[0])
    return out


# --------------------------------------------------------------------------- length filter


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from transformers import AutoTokenizer

    from icdpo_eval.data.embedded import base_model_path

    return AutoTokenizer.from_pretrained(str(base_model_path()))


def count_tokens(texts: list[str]) -> list[int]:
    """Token counts under the embedded Gemma-3 tokenizer, without special tokens."""
    if not texts:
        return []
    return [len(ids) for ids in _tokenizer()(texts, add_special_tokens=False)["input_ids"]]


def length_filter(rows: list[Row], max_prompt: int, max_response: int, source: str) -> list[Row]:
    """Keep rows whose prompt and both responses fit the limits; log how many were kept."""
    p = count_tokens([r["prompt"] for r in rows])
    c = count_tokens([r["chosen"] for r in rows])
    r_ = count_tokens([r["rejected"] for r in rows])
    kept = [
        row
        for row, a, b, d in zip(rows, p, c, r_, strict=True)
        if a <= max_prompt and b <= max_response and d <= max_response
    ]
    log.warning("length filter kept %d of %d rows of %s", len(kept), len(rows), source)
    return kept


# --------------------------------------------------------------------------- files and sources


class _BadLine(str):
    """An unparsable JSONL line, reported by ``_parse`` as a malformed row."""


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[Any]:
    """Objects of a ``.jsonl`` or ``.jsonl.gz`` file (gzip detected by suffix)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        for lineno, line in enumerate(fh):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    yield _BadLine(f"invalid JSON on line {lineno + 1}: {e}")


def _local_file(*parts: str) -> Path:
    root = Path(os.environ[DATA_ENV])
    base = root.joinpath(*parts)
    candidates = [base.with_name(base.name + ".jsonl.gz"), base.with_name(base.name + ".jsonl")]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"{DATA_ENV}={root} is set but {candidates[0]} (or {candidates[1].name}) does not exist; "
        f"lay the data out like the hub repos or unset {DATA_ENV} to load from the hub"
    )


def _raw_rows(dataset: str, subset: str | None, split: str) -> tuple[Iterable[dict[str, Any]], str]:
    """Raw rows and a source description, from $ICDPO_DATA_DIR or the hub."""
    local = bool(os.environ.get(DATA_ENV))
    if dataset == "hh-rlhf":
        assert subset is not None
        if local:
            path = _local_file("hh-rlhf", subset, split)
            return read_jsonl(path), str(path)
        return _hub("Anthropic/hh-rlhf", data_dir=subset, split=split), f"Anthropic/hh-rlhf {subset}/{split}"
    if local:
        path = _local_file("synthetic-gpt", "train")
        return read_jsonl(path), str(path)
    repo = "Dahoas/synthetic-instruct-gptj-pairwise"
    return _hub(repo, split="train"), f"{repo} train"


def _hub(repo: str, **kwargs: str) -> Iterable[dict[str, Any]]:
    import datasets

    try:
        return datasets.load_dataset(repo, revision=HUB_REVISIONS.get(repo), **kwargs)
    except (ConnectionError, OSError) as e:
        raise ConnectionError(
            f"could not load {repo} ({kwargs}) from the Hugging Face hub: {e}; without network, "
            f"set {DATA_ENV} to a local copy (see icdpo_eval.data.datasets)"
        ) from e


def synthetic_split_of(prompt: str, seed: int = SYNTHETIC_SEED) -> str:
    """Deterministic 90/5/5 train/dev/test bucket of a SyntheticGPT prompt (a seeded hash of it)."""
    bucket = int(hashlib.sha256(f"{seed}:{prompt}".encode()).hexdigest()[:8], 16) % 100
    return "train" if bucket < 90 else "dev" if bucket < 95 else "test"


def load_pairs(
    dataset: str,
    subset: str | None,
    split: str,
    *,
    on_error: OnError = "skip",
    apply_length_filter: bool = True,
) -> list[Row]:
    """Preference rows of ``dataset`` in {"hh-rlhf", "synthetic-gpt", "hh-rlhf-mini"}.

    hh-rlhf: subset ``harmless-base``/``helpful-base``, split ``train``/``test``;
    synthetic-gpt: subset ignored, split ``train``/``dev``/``test`` (our seeded split);
    hh-rlhf-mini: split ``eval``/``pool`` (vendored, already length-filtered).
    """
    if dataset == "hh-rlhf-mini":
        if split not in ("eval", "pool"):
            raise DataError(f"hh-rlhf-mini has splits 'eval' and 'pool', not {split!r}")
        path = MINI_DIR / f"{split}.jsonl"
        return _parse(read_jsonl(path), str(path), "pair", f"hh-rlhf-mini/{split}", on_error)
    if dataset == "hh-rlhf":
        if subset not in HH_SUBSETS:
            raise DataError(f"hh-rlhf subset must be one of {HH_SUBSETS}, not {subset!r}")
        if split not in ("train", "test"):
            raise DataError(f"hh-rlhf has splits 'train' and 'test', not {split!r}")
        raw, source = _raw_rows(dataset, subset, split)
        rows = _parse(raw, source, "hh", f"{subset}/{split}", on_error)
    elif dataset == "synthetic-gpt":
        split = "dev" if split == "validation" else split
        if split not in SYNTHETIC_SPLITS:
            raise DataError(f"synthetic-gpt has splits {SYNTHETIC_SPLITS}, not {split!r}")
        raw, source = _raw_rows(dataset, None, "train")
        rows = _parse(raw, source, "synthetic", "synthetic-gpt/train", on_error)
        rows = [r for r in rows if synthetic_split_of(r["prompt"]) == split]
        source = f"{source} ({split} part)"
    else:
        raise DataError(f"unknown dataset {dataset!r}; known: hh-rlhf, synthetic-gpt, hh-rlhf-mini")
    if apply_length_filter:
        rows = length_filter(rows, *LENGTH_LIMITS[dataset], source=source)
    return rows


def load_pairs_file(path: str | os.PathLike[str], *, on_error: OnError = "raise") -> list[Row]:
    """Rows of a user ``.jsonl``/``.jsonl.gz`` file, no length filter.

    Each line is either ``{"prompt", "chosen", "rejected"}`` (prompt kept verbatim, responses
    stripped) or raw HH transcripts ``{"chosen", "rejected"}``; detected per row. An ``id``
    string field is kept, else the id is ``<file name>/<row index>``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"preference-pair file {p} does not exist")
    return _parse(read_jsonl(p), str(p), "auto", p.name, on_error)


def mini_ids() -> frozenset[str]:
    """Ids (``harmless-base/test/<row>``) of the HH-RLHF test rows used by the vendored mini set."""
    return frozenset(r["id"] for split in ("eval", "pool") for r in load_pairs("hh-rlhf-mini", None, split))


def heldout_pairs(*, apply_length_filter: bool = True) -> list[Row]:
    """HH-RLHF harmless-base test rows in neither the mini eval set nor its demo pool."""
    used = mini_ids()
    rows = load_pairs("hh-rlhf", "harmless-base", "test", apply_length_filter=apply_length_filter)
    return [r for r in rows if r["id"] not in used]


def parse_spec(spec: str) -> tuple[str, str | None, str]:
    """``"dataset:subset:split"`` or ``"dataset:split"`` -> (dataset, subset, split)."""
    parts = spec.split(":")
    if len(parts) == 3:
        return parts[0], parts[1] or None, parts[2]
    if len(parts) == 2:
        return parts[0], None, parts[1]
    raise DataError(f"bad data spec {spec!r}: expected a path, 'dataset:subset:split' or 'dataset:split'")


@functools.lru_cache(maxsize=16)
def _demo_pool(spec: str | None, task_name: str) -> tuple[Row, ...]:
    if spec is None or spec in TASK_DEFAULTS:
        name = spec or task_name
        if name not in TASK_DEFAULTS:
            raise DataError(
                f"task {task_name!r} has no default demo pool; pass --model_args demo_pool=<file.jsonl|"
                f"dataset:subset:split> (known tasks: {', '.join(TASK_DEFAULTS)})"
            )
        t = TASK_DEFAULTS[name]
        return tuple(load_pairs(t.dataset, t.subset, t.pool_split))
    if Path(spec).is_file() or spec.endswith((".jsonl", ".jsonl.gz")):
        return tuple(load_pairs_file(spec))
    return tuple(load_pairs(*parse_spec(spec)))


def clear_cache() -> None:
    """Forget cached demo pools (e.g. after changing ``$ICDPO_DATA_DIR``)."""
    _demo_pool.cache_clear()


def demo_pool(spec: str | None, task_name: str) -> list[Row]:
    """Demonstration pool for ``task_name``, cached per (spec, task) in-process.

    ``spec`` None (or a task name): the task's default pool (:data:`TASK_DEFAULTS`: the mini set's
    vendored pool, HH-RLHF train of the same subset, the SyntheticGPT train part); a path: a user
    JSONL file (:func:`load_pairs_file`); ``"hh-rlhf:harmless-base:train"``-style: :func:`load_pairs`.
    The row dicts are shared between calls: do not mutate them.
    """
    return list(_demo_pool(spec, task_name))
