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
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

from icdpo_eval.config import settings
from icdpo_eval.data.hh import (  # noqa: F401
    ASSISTANT,
    DataError,
    DataFileNotFoundError,
    check_text,
    format_instruction,
    prepare_row,
    split_dialogue,
)

log = logging.getLogger(__name__)

DATA_ENV = "ICDPO_DATA_DIR"  # read through icdpo_eval.config.settings.data_dir()
MINI_DIR = Path(__file__).parent / "hh_harmless_mini"
HH_SUBSETS = ("harmless-base", "helpful-base")
# hub datasets load at a pinned commit (recorded in the tasks' metadata, hence in every results file);
# Dahoas/synthetic-instruct-gptj-pairwise is read at its current head (no pinned commit known to us)
HUB_REVISIONS: dict[str, str] = {"Anthropic/hh-rlhf": "09be8c5bbc57cb3887f3a9732ad6aa7ec602a1fa"}
SYNTHETIC_SPLITS = ("train", "dev", "test")
SYNTHETIC_SEED = 42
# The paper's limits per dataset, in one place: the length filters (max prompt / response tokens) and what its
# tasks sample with (at most `response` new tokens, top-p 0.8). The task YAMLs state the same generation settings
# (lm-eval reads YAML, not Python): tests/test_tasks.py checks every task's YAML against task_limits().
TOP_P = 0.8
LENGTH_LIMITS: dict[str, tuple[int, int]] = {"hh-rlhf": (320, 128), "synthetic-gpt": (128, 200)}


class TaskLimits(NamedTuple):
    prompt: int  # max prompt tokens (length filter)
    response: int  # max response tokens (length filter) = max new tokens a task samples
    top_p: float = TOP_P

    @property
    def max_gen_toks(self) -> int:
        return self.response


def task_limits(task: str | None) -> TaskLimits:
    """The limits of ``task``'s dataset (:data:`TASK_DEFAULTS`); HH-RLHF's for a task we do not know (the mini set,
    a user's pool)."""
    return TaskLimits(*pool_limits(task)[1])


OnError = Literal["raise", "skip"]
Row = dict[str, str]
# what a user pool file needs, appended to its row errors
PAIR_LINE_HINT = "each line needs prompt/chosen/rejected strings or HH chosen/rejected transcripts"


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
    if not isinstance(row, dict):
        raise DataError(f"not a JSON object: {type(row).__name__}")
    value = row.get(key)
    if not isinstance(value, str):
        raise DataError(f"missing or non-string field {key!r}")
    return check_text(value, f"field {key!r}")


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


Kind = Literal["hh", "pair", "synthetic", "auto"]


def _parse(rows: Iterable[Any], source: str, kind: Kind, id_prefix: str, on_error: OnError) -> list[Row]:
    """Rows from raw values (hub rows, :func:`read_jsonl`), reported without line numbers."""
    return _parse_numbered(((None, r) for r in rows), source, kind, id_prefix, on_error)


def _parse_numbered(
    rows: Iterable[tuple[int | None, Any]], source: str, kind: Kind, id_prefix: str, on_error: OnError
) -> list[Row]:
    """Rows from ``(line number or None, raw value)`` pairs (:func:`iter_jsonl`, or hub rows with None).

    A malformed row is reported as ``<file>:<line>: <file name> row <i>: <why>; <what each line needs>``
    (``<source> row <i>: ...`` without a line number), ``i`` counting rows (not blank lines) from 0 as
    in the default ids ``<id_prefix>/<i>``.
    """
    out: list[Row] = []
    skipped: list[str] = []
    for i, (line, row) in enumerate(rows):
        try:
            if isinstance(row, BadLine):
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
            rid = row.get("id")
            rid = check_text(rid, "field 'id'") if isinstance(rid, str) else f"{id_prefix}/{i}"
        except DataError as e:
            where = f"{source} row {i}" if line is None else f"{source}:{line}: {Path(source).name} row {i}"
            reason = f"{where}: {e}; {PAIR_LINE_HINT}"
            if on_error == "raise":
                raise DataError(reason) from None
            skipped.append(reason)
            continue
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "id": rid})
    if skipped:
        log.warning("skipped %d malformed rows of %s: first: %s", len(skipped), source, skipped[0])
    return out


# --------------------------------------------------------------------------- length filter


def _tokenizer():
    from icdpo_eval.data.embedded import base_model_path
    from icdpo_eval.runtime import tokenizer

    return tokenizer(str(base_model_path()))


def count_tokens(texts: list[str]) -> list[int]:
    """Token counts under the embedded Gemma-3 tokenizer, without special tokens."""
    if not texts:
        return []
    return [len(ids) for ids in _tokenizer()(texts, add_special_tokens=False)["input_ids"]]


def length_filter(rows: list[Row], max_prompt: int, max_response: int, source: str) -> list[Row]:
    """Keep rows whose prompt and both responses fit the limits; log how many were kept."""
    return length_filter_stats(rows, max_prompt, max_response, source)[0]


def filter_stats(
    source: str,
    rows: int,
    kept: int,
    prompt_too_long: int = 0,
    response_too_long: int = 0,
    limits: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The record of what a length filter did to one source (``max_*_tokens`` None: no filter applied)."""
    return {
        "source": source,
        "rows": rows,
        "kept": kept,
        "dropped_prompt_too_long": prompt_too_long,
        "dropped_response_too_long": response_too_long,
        "max_prompt_tokens": limits[0] if limits else None,
        "max_response_tokens": limits[1] if limits else None,
    }


def length_filter_stats(
    rows: list[Row], max_prompt: int, max_response: int, source: str, measured: list[Row] | None = None
) -> tuple[list[Row], dict[str, Any]]:
    """:func:`length_filter` and its :func:`filter_stats`: a dropped row is counted once, under
    ``dropped_prompt_too_long`` if its prompt is over ``max_prompt`` tokens, else under
    ``dropped_response_too_long`` (chosen or rejected over ``max_response``). Logged once, as a warning.
    ``measured[i]`` (default ``rows[i]``) is the text whose tokens are counted for row i (its prepared
    dialogue, see :func:`prepared`)."""
    m = rows if measured is None else measured
    p = count_tokens([r["prompt"] for r in m])
    c = count_tokens([r["chosen"] for r in m])
    r_ = count_tokens([r["rejected"] for r in m])
    kept: list[Row] = []
    long_prompt = long_response = 0
    for row, a, b, d in zip(rows, p, c, r_, strict=True):
        if a > max_prompt:
            long_prompt += 1
        elif b > max_response or d > max_response:
            long_response += 1
        else:
            kept.append(row)
    log.warning(
        "length filter kept %d of %d rows of %s (dropped %d with a prompt over %d tokens, %d with a "
        "response over %d tokens)",
        len(kept),
        len(rows),
        source,
        long_prompt,
        max_prompt,
        long_response,
        max_response,
    )
    return kept, filter_stats(source, len(rows), len(kept), long_prompt, long_response, (max_prompt, max_response))


# --------------------------------------------------------------------------- files and sources


class BadLine(str):
    """An unparsable JSONL line (not UTF-8, not JSON), reported by its reader as a malformed row."""


_JSON_SPACE = " \t\r\n"


def _decode_line(raw: bytes, first: bool) -> Any:
    """The JSON value of one line, None for a blank line, a :class:`BadLine` saying why it is unparsable."""
    try:
        text = raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as e:
        return BadLine(
            f"not UTF-8 text (byte {e.start} of the line: {raw[e.start : e.start + 4]!r}); save the file as UTF-8"
        )
    if not text.strip(_JSON_SPACE):
        return None
    try:
        return json.loads(text)
    except ValueError as e:  # json.JSONDecodeError, or an integer too long to convert
        return BadLine(f"invalid JSON ({e})")
    except RecursionError:
        return BadLine("invalid JSON (nested too deeply)")


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` per non-blank line of a ``.jsonl`` or ``.jsonl.gz`` file (gzip by suffix).

    Lines are split on ``"\\n"`` only (so a U+2028 or a lone ``"\\r"`` inside a JSON string stays part of
    its line) and numbered from 1, blank lines counted; a UTF-8 byte-order mark is ignored. An unparsable
    line yields a :class:`BadLine`; an unreadable file or a corrupt/truncated gzip archive raises
    :class:`DataError` naming the file (a missing one :class:`DataFileNotFoundError`).
    """
    path = Path(path)
    gz = path.name.endswith(".gz")
    try:
        fh = gzip.open(path, "rb") if gz else open(path, "rb")
    except FileNotFoundError:
        raise DataFileNotFoundError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot open ({e.strerror or e})") from None
    with fh:
        lineno = 0
        while True:
            try:
                raw = fh.readline()
            except (OSError, EOFError, zlib.error) as e:
                what = "corrupt or truncated gzip archive" if gz else "unreadable file"
                raise DataError(
                    f"{path}: {what} after line {lineno} ({e.__class__.__name__}: {e}); "
                    f"{'download or compress it again' if gz else 'check the file'}"
                ) from None
            if not raw:
                return
            lineno += 1
            value = _decode_line(raw, lineno == 1)
            if value is not None:
                yield lineno, value


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[Any]:
    """Values of a ``.jsonl`` or ``.jsonl.gz`` file (see :func:`iter_jsonl`; unparsable lines as
    :class:`BadLine` strings naming their line)."""
    for lineno, value in iter_jsonl(path):
        yield BadLine(f"line {lineno}: {value}") if isinstance(value, BadLine) else value


def _local_file(*parts: str) -> Path:
    root = settings.data_dir()
    assert root is not None
    base = root.joinpath(*parts)
    candidates = [base.with_name(base.name + ".jsonl.gz"), base.with_name(base.name + ".jsonl")]
    for c in candidates:
        if c.is_file():
            return c
    raise DataFileNotFoundError(
        f"{DATA_ENV}={root} is set but {candidates[0]} (or {candidates[1].name}) does not exist; "
        f"lay the data out like the hub repos or unset {DATA_ENV} to load from the hub"
    )


def _raw_rows(dataset: str, subset: str | None, split: str) -> tuple[Iterable[tuple[int | None, Any]], str]:
    """(line number or None, raw row) pairs and a source description, from $ICDPO_DATA_DIR or the hub."""
    local = settings.data_dir() is not None
    if dataset == "hh-rlhf":
        assert subset is not None
        if local:
            path = _local_file("hh-rlhf", subset, split)
            return iter_jsonl(path), str(path)
        hub = _hub("Anthropic/hh-rlhf", data_dir=subset, split=split)
        return ((None, r) for r in hub), f"Anthropic/hh-rlhf {subset}/{split}"
    if local:
        path = _local_file("synthetic-gpt", "train")
        return iter_jsonl(path), str(path)
    repo = "Dahoas/synthetic-instruct-gptj-pairwise"
    return ((None, r) for r in _hub(repo, split="train")), f"{repo} train"


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
    dialogue: str = "verbatim",
    output: str = "verbatim",
) -> list[Row]:
    """Preference rows of ``dataset`` in {"hh-rlhf", "synthetic-gpt", "hh-rlhf-mini"}.

    hh-rlhf: subset ``harmless-base``/``helpful-base``, split ``train``/``test``;
    synthetic-gpt: subset ignored, split ``train``/``dev``/``test`` (our seeded split);
    hh-rlhf-mini: split ``eval``/``pool`` (vendored, already length-filtered verbatim).
    ``dialogue="pro"``: HH rows are read as the released code reads them (:func:`prepared`) and the length
    filter counts that text; ``output`` says which text the rows returned hold (``"prepared"`` or ``"verbatim"``).
    """
    return _load_pairs(dataset, subset, split, on_error, apply_length_filter, dialogue, output)[0]


def prepared(rows: list[Row], dataset: str, dialogue: str) -> tuple[list[Row], dict[str, int]]:
    """The rows as ``dialogue`` reads them (``pro``: :func:`icdpo_eval.data.hh.prepare_row` on HH data; SyntheticGPT
    rows are never changed) and how many prompts, chosen and rejected responses changed."""
    counts = {"prompt": 0, "chosen": 0, "rejected": 0}
    if dialogue == "verbatim" or not dataset.startswith("hh-rlhf"):
        return rows, counts
    if dialogue != "pro":
        raise DataError(f"dialogue={dialogue!r} is not one of: pro, verbatim")
    out = [prepare_row(r) for r in rows]
    for a, b in zip(rows, out, strict=True):
        for k in counts:
            counts[k] += a[k] != b[k]
    return out, counts


def _filtered(rows: list[Row], dataset: str, source: str, apply: bool, dialogue: str, output: str,
              presized: bool = False) -> tuple[list[Row], dict[str, Any]]:
    """Prepare (``dialogue``), length-filter (``apply``) and return the ``output`` text of the kept rows."""
    view, changed = prepared(rows, dataset, dialogue)
    limits = LENGTH_LIMITS["hh-rlhf" if dataset.startswith("hh-rlhf") else dataset]
    if any(changed.values()):
        log.warning("dialogue=%s: %s of %s (%d rows) read differently from the dataset's text (each turn's first "
                    "paragraph, consecutive turns of a speaker merged)", dialogue,
                    ", ".join(f"{v} {k}" for k, v in changed.items()), source, len(rows))
    if presized or not apply:
        keep = list(range(len(rows)))
        stats = filter_stats(source, len(rows), len(rows), limits=limits if presized else None)
    else:
        tagged = [{**v, "_i": i} for i, v in enumerate(view)]
        kept, stats = length_filter_stats(tagged, *limits, source=source)
        keep = [r["_i"] for r in kept]
    stats["dialogue"] = dialogue
    stats["dialogue_changed"] = changed  # rows whose prompt / chosen / rejected reads differently
    chosen = view if output == "prepared" else rows
    return [chosen[i] for i in keep], stats


def _load_pairs(
    dataset: str, subset: str | None, split: str, on_error: OnError, apply_length_filter: bool,
    dialogue: str = "verbatim", output: str = "verbatim",
) -> tuple[list[Row], dict[str, Any]]:
    """:func:`load_pairs` and its :func:`filter_stats`."""
    if dataset == "hh-rlhf-mini":
        if split not in ("eval", "pool"):
            raise DataError(f"hh-rlhf-mini has splits 'eval' and 'pool', not {split!r}")
        path = MINI_DIR / f"{split}.jsonl"
        rows = _parse_numbered(iter_jsonl(path), str(path), "pair", f"hh-rlhf-mini/{split}", on_error)
        # filtered with the HH-RLHF limits when it was made (scripts/make_mini_data.py); preparing only shortens
        return _filtered(rows, dataset, str(path), False, dialogue, output, presized=True)
    if dataset == "hh-rlhf":
        if subset not in HH_SUBSETS:
            raise DataError(f"hh-rlhf subset must be one of {HH_SUBSETS}, not {subset!r}")
        if split not in ("train", "test"):
            raise DataError(f"hh-rlhf has splits 'train' and 'test', not {split!r}")
        raw, source = _raw_rows(dataset, subset, split)
        rows = _parse_numbered(raw, source, "hh", f"{subset}/{split}", on_error)
    elif dataset == "synthetic-gpt":
        split = "dev" if split == "validation" else split
        if split not in SYNTHETIC_SPLITS:
            raise DataError(f"synthetic-gpt has splits {SYNTHETIC_SPLITS}, not {split!r}")
        raw, source = _raw_rows(dataset, None, "train")
        rows = _parse_numbered(raw, source, "synthetic", "synthetic-gpt/train", on_error)
        rows = [r for r in rows if synthetic_split_of(r["prompt"]) == split]
        source = f"{source} ({split} part)"
    else:
        raise DataError(f"unknown dataset {dataset!r}; known: hh-rlhf, synthetic-gpt, hh-rlhf-mini")
    return _filtered(rows, dataset, source, apply_length_filter, dialogue, output)


def load_pairs_file(
    path: str | os.PathLike[str], *, on_error: OnError = "raise", limits: tuple[int, int] | None = None
) -> list[Row]:
    """Rows of a user ``.jsonl``/``.jsonl.gz`` file; length-filtered only when ``limits`` =
    (max prompt tokens, max response tokens) is given (see :func:`load_pairs_file_stats`).

    Each line is either ``{"prompt", "chosen", "rejected"}`` (prompt kept verbatim, responses
    stripped) or raw HH transcripts ``{"chosen", "rejected"}``; detected per row. An ``id``
    string field is kept, else the id is ``<file name>/<row index>``. A malformed row raises
    :class:`DataError` naming the file and line (``on_error="skip"``: skipped and counted in the log);
    a missing file :class:`DataFileNotFoundError`, a corrupt ``.gz`` a :class:`DataError` naming it.
    """
    return load_pairs_file_stats(path, on_error=on_error, limits=limits)[0]


def load_pairs_file_stats(
    path: str | os.PathLike[str], *, on_error: OnError = "raise", limits: tuple[int, int] | None = None
) -> tuple[list[Row], dict[str, Any]]:
    """:func:`load_pairs_file` and its :func:`filter_stats` (rows over ``limits`` dropped and counted)."""
    p = Path(path)
    if not p.is_file():
        raise DataFileNotFoundError(
            f"preference-pair file {p} does not exist; pass an existing .jsonl or "
            ".jsonl.gz file (one JSON object a line)"
        )
    rows = _parse_numbered(iter_jsonl(p), str(p), "auto", p.name, on_error)
    if limits is None:
        return rows, filter_stats(str(p), len(rows), len(rows))
    return length_filter_stats(rows, *limits, source=str(p))


def pool_limits(task_name: str | None) -> tuple[str, tuple[int, int]]:
    """(dataset, (max prompt, max response tokens)) that a user pool file gets for ``task_name``: those
    of the task's dataset (:data:`TASK_DEFAULTS`; the mini set's are HH-RLHF's), HH-RLHF's by default."""
    t = TASK_DEFAULTS.get(task_name or "")
    dataset = t.dataset if t is not None and t.dataset in LENGTH_LIMITS else "hh-rlhf"
    return dataset, LENGTH_LIMITS[dataset]


def is_pool_file(spec: str | None) -> bool:
    """Whether a ``demo_pool`` spec names a user file (else a task default or a dataset spec)."""
    return bool(spec) and spec not in TASK_DEFAULTS and (Path(spec).is_file() or spec.endswith((".jsonl", ".jsonl.gz")))


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


Pool = tuple[tuple[Row, ...], dict[str, Any]]  # rows, filter_stats


@functools.lru_cache(maxsize=16)
def _pool_file(path: str, dataset: str, dialogue: str) -> Pool:
    if not Path(path).is_file():
        raise DataFileNotFoundError(
            f"demo_pool={path}: no such file; pass an existing .jsonl/.jsonl.gz file of "
            "preference pairs, a dataset spec such as hh-rlhf:harmless-base:train, or "
            "leave demo_pool out for the task's default pool"
        )
    rows = _parse_numbered(iter_jsonl(path), path, "auto", Path(path).name, "raise")
    kept, stats = _filtered(rows, dataset, path, True, dialogue, "prepared")
    return tuple(kept), stats


@functools.lru_cache(maxsize=16)
def _demo_pool(spec: str | None, task_name: str, dialogue: str = "verbatim") -> Pool:
    if spec is None or spec in TASK_DEFAULTS:
        name = spec or task_name
        if name not in TASK_DEFAULTS:
            raise DataError(
                f"task {task_name!r} has no default demo pool; pass --model_args demo_pool=<file.jsonl|"
                f"dataset:subset:split> (known tasks: {', '.join(TASK_DEFAULTS)})"
            )
        t = TASK_DEFAULTS[name]
        rows, stats = _load_pairs(t.dataset, t.subset, t.pool_split, "skip", True, dialogue, "prepared")
        return tuple(rows), stats
    if is_pool_file(spec):
        return _pool_file(spec, pool_limits(task_name)[0], dialogue)
    rows, stats = _load_pairs(*parse_spec(spec), "skip", True, dialogue, "prepared")
    return tuple(rows), stats


def clear_cache() -> None:
    """Forget cached demo pools and evaluation rows (e.g. after changing ``$ICDPO_DATA_DIR``)."""
    _demo_pool.cache_clear()
    _pool_file.cache_clear()
    _eval_rows.cache_clear()


def demo_pool(spec: str | None, task_name: str, dialogue: str = "verbatim") -> list[Row]:
    """Demonstration pool for ``task_name``, cached per (spec, task, dialogue) in-process.

    ``spec`` None (or a task name): the task's default pool (:data:`TASK_DEFAULTS`: the mini set's
    vendored pool, HH-RLHF train of the same subset, the SyntheticGPT train part); a path: a user
    JSONL file (parsed like :func:`load_pairs_file`, with the length limits of the task's dataset,
    :func:`pool_limits`: over-long rows are dropped and counted, see :func:`demo_pool_stats`);
    ``"hh-rlhf:harmless-base:train"``-style: :func:`load_pairs`. ``dialogue="pro"``: HH rows (prompt, chosen
    and rejected) as the released code reads them, length-filtered on that text. The row dicts are shared
    between calls: do not mutate them.
    """
    return list(_demo_pool(spec, task_name, dialogue)[0])


def demo_pool_stats(spec: str | None, task_name: str, dialogue: str = "verbatim") -> dict[str, Any]:
    """What the length filter did to :func:`demo_pool` ``(spec, task_name, dialogue)`` (:func:`filter_stats`:
    source, rows, kept, dropped_prompt_too_long, dropped_response_too_long, max_prompt_tokens, max_response_tokens,
    dialogue, dialogue_changed); loads the pool if it is not cached yet."""
    return dict(_demo_pool(spec, task_name, dialogue)[1])


@functools.lru_cache(maxsize=8)
def _eval_rows(task: str, dialogue: str) -> tuple[tuple[Row, ...], dict[str, Any]]:
    t = TASK_DEFAULTS[task]
    rows, stats = _load_pairs(t.dataset, t.subset, t.eval_split, "skip", True, dialogue, "verbatim")
    return tuple(rows), stats


def eval_rows(task: str, dialogue: str = "pro") -> list[Row]:
    """The evaluation rows of ``task`` (a key of :data:`TASK_DEFAULTS`) in the dataset's text, length-filtered on
    the text ``dialogue`` reads (cached in-process: the run's checks and its task read them once)."""
    if task not in TASK_DEFAULTS:
        raise DataError(f"unknown task data {task!r}; one of: {', '.join(TASK_DEFAULTS)}")
    return list(_eval_rows(task, dialogue)[0])


def eval_rows_stats(task: str, dialogue: str = "pro") -> dict[str, Any]:
    return dict(_eval_rows(task, dialogue)[1])
