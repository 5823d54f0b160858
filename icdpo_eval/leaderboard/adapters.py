"""The spec's ``adapters:``: LoRA adapters trained (TRL + peft, :mod:`icdpo_eval.baselines.train`) before the rows
run, cached under the cache dir by their options and the training code, and the ``trained:NAME`` model_args
that name them.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from icdpo_eval.config import settings
from icdpo_eval.leaderboard.spec import TRAINED_PREFIX, Spec


def adapter_dir(name: str, opts: dict[str, Any]) -> Path:
    """Where the spec's adapter ``name`` is cached: the cache dir, keyed by its training options, the package
    version, the training code and, when ``ICDPO_EMBEDDED_DIR`` replaces the embedded models, which ones (a change
    to any of them trains a new adapter)."""
    import inspect

    from icdpo_eval import __version__
    from icdpo_eval.baselines import train as train_mod
    from icdpo_eval.data import embedded

    key = {"opts": opts, "version": __version__,
           "code": hashlib.sha256(inspect.getsource(train_mod).encode()).hexdigest()}
    if settings.embedded_dir() is not None:  # other embedded models (the tests' twins): other adapters
        key["embedded"] = {kind: embedded.identity(kind) for kind in ("base", "teacher")
                           if (settings.embedded_dir() / kind).is_dir()}
    blob = json.dumps(key, sort_keys=True, default=str)
    return embedded.cache_dir() / "adapters" / f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def prepare_adapters(spec: Spec) -> dict[str, Path]:
    """Train (once; cached, see :func:`adapter_dir`) every adapter the spec's rows use. Under ``accelerate launch``
    rank 0 trains each in a process of its own (the trainer must not join the leaderboard's process group)."""
    import shutil

    from icdpo_eval.baselines.train import PROVENANCE, TrainArgs, train

    used = {str(v).removeprefix(TRAINED_PREFIX) for r in spec.rows for v in r.model_args.values()
            if str(v).startswith(TRAINED_PREFIX)}
    paths = {}
    for name in sorted(used):
        opts = spec.adapters[name]
        path = adapter_dir(name, opts)
        if not (path / PROVENANCE).is_file():
            if path.exists():
                shutil.rmtree(path)  # an unfinished earlier attempt
            print(f"leaderboard: training adapter {name!r} ({opts}) -> {path}", file=sys.stderr)
            if settings.world_size() > 1:
                _train_apart(opts, path)
            else:
                train(TrainArgs(out=str(path), **opts))
        paths[name] = path
    return paths


def _train_apart(opts: dict[str, Any], path: Path) -> None:
    """``icdpo-eval train`` in a child process with no launcher variables (a single-process trainer)."""
    import subprocess

    argv = [sys.executable, "-m", "icdpo_eval.cli", "train", str(opts["method"]), "--out", str(path)]
    for k, v in opts.items():
        if k != "method":
            argv += [f"--{k.replace('_', '-')}", str(v)]
    subprocess.run(argv, env=settings.single_process_env(), check=True)


def with_adapters(spec: Spec, paths: dict[str, Path]) -> Spec:
    """The spec with every ``trained:NAME`` model_arg replaced by the adapter's folder."""
    from dataclasses import replace

    def sub(v: Any) -> Any:
        return str(paths[str(v).removeprefix(TRAINED_PREFIX)]) if str(v).startswith(TRAINED_PREFIX) else v

    return replace(spec, rows=[replace(r, model_args={k: sub(v) for k, v in r.model_args.items()}) for r in spec.rows])


