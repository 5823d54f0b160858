"""The decode step's kernels: which exact kernel computes the trunk's linear layers and the vocabulary projection
for a given number of rows, chosen by measurement on this machine (``auto``), fixed to oneDNN's kernel with no
measurement (``onednn``: the same bits on every machine of one kind, whatever a timing probe would pick), or left to
transformers (``off``).

Every choice computes the same products (no approximation), but they may differ in the last float bits; so a
choice, once measured, is saved per machine (CPU model, cores, threads, torch) and reused, and :meth:`DecodeKernels.key`
names the machine's choice file in the results, the journal key and the candidate store's key. The trunk's kernel is
switched by a :class:`torch.overrides.TorchFunctionMode` active only inside the engine's own decode step: no module of
the model is touched, so other users of the same weights (lm-eval's ``hf`` on the leaderboard, training) compute
exactly what they would without the engine. One timer (:func:`best_of`) serves every probe."""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable
from typing import Any

import torch

from icdpo_eval.engine.loading import forward_params

MODES = ("auto", "off", "onednn")
REPEATS = 3  # every probe: the best of this many timed calls, after one warm-up


def best_of(fn: Callable[[], Any], k: int = REPEATS) -> float:
    """Seconds of the fastest of ``k`` calls of ``fn`` (after one untimed warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(k):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _onednn_usable(weight: torch.Tensor) -> bool:
    """oneDNN's linear kernel applies: fp32 weights on the CPU and a torch built with it."""
    return (weight.device.type == "cpu" and weight.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` computed by oneDNN (the kernel torch's compiler uses on the CPU)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def machine() -> str:
    """What a measured choice depends on besides the shapes: CPU model, cores, torch threads, torch version."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}|{os.cpu_count()}|{torch.get_num_threads()}|{torch.__version__}"


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _choices_path(kind: str, ident: str) -> Any:
    """Where the layout choices measured on this machine (:func:`machine`) are saved."""
    from icdpo_eval import runtime

    return runtime.cache_path(kind, _digest(f"{machine()}|{ident}") + ".json")


def _load_choices(kind: str, ident: str) -> dict[int, str]:
    import json

    try:
        return {int(k): str(v) for k, v in json.loads(_choices_path(kind, ident).read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _save_choices(kind: str, ident: str, choice: dict[int, str]) -> None:
    import json

    from icdpo_eval import runtime

    path = _choices_path(kind, ident)
    with runtime.locked(path):
        merged = {**_load_choices(kind, ident), **choice}
        runtime.atomic_write(path, lambda fh: json.dump({str(k): v for k, v in sorted(merged.items())}, fh))


class _LinearKernel(torch.overrides.TorchFunctionMode):
    """Within: every ``F.linear`` call (what ``nn.Linear.forward`` makes) runs ``kernel`` instead; other calls pass."""

    def __init__(self, kernel: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.kernel = kernel

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.linear:
            return self.kernel(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


class TrunkLinears:
    """The trunk's linear layers (attention and MLP projections) on a decode step, in the faster exact kernel for
    that many rows: BLAS's ``F.linear`` (what transformers calls) or oneDNN's linear on the same weights. Both are
    timed on this machine the first time a row count is seen (on inputs of the layers' shapes, :func:`best_of`) and
    the choice is saved beside :class:`LMHead`'s. Only the engine's decode steps switch kernel (:meth:`decode`, a
    torch function mode): the layers themselves are untouched, so prefill, scoring, training and HF ``generate``
    on the same weights run ``F.linear`` as before."""

    KINDS = {"linear": torch.nn.functional.linear, "onednn": _onednn_linear}

    def __init__(self, modules: list[torch.nn.Linear], fixed: str | None = None) -> None:
        self.modules = modules
        self.fixed = fixed  # one kernel for every row count, never measured (decode_kernels=onednn)
        self.ident = "|".join(f"{tuple(m.weight.shape)}" for m in modules) + f"|{','.join(self.KINDS)}"
        self.choice: dict[int, str] = {} if fixed else _load_choices("trunk_linears", self.ident)
        self.timings: dict[int, dict[str, float]] = {}

    @classmethod
    def of(cls, trunk: Any, fixed: str | None = None) -> TrunkLinears | None:
        """The trunk's :class:`TrunkLinears`, or None where there is no choice to make (not fp32 on the CPU, no
        oneDNN, no plain linear layer)."""
        if trunk is None:
            return None
        mods = [m for m in trunk.modules() if type(m) is torch.nn.Linear]
        if not mods or not all(_onednn_usable(m.weight) for m in mods):
            return None
        return cls(mods, fixed)

    def _choose(self, rows: int) -> str:
        xs = {m.in_features: torch.randn(rows, 1, m.in_features) for m in self.modules}

        def run(kernel: Any) -> Callable[[], None]:
            return lambda: [kernel(xs[m.in_features], m.weight, m.bias) for m in self.modules]

        times = {name: best_of(run(kernel)) for name, kernel in self.KINDS.items()}
        self.timings[rows] = {k: v * 1000 for k, v in times.items()}
        return min(times, key=times.__getitem__)

    def decode(self, rows: int) -> contextlib.AbstractContextManager:
        """Within: the trunk's linear layers run the kernel chosen for ``rows`` rows (measured the first time)."""
        if self.fixed:
            self.choice[rows] = self.fixed
        if rows not in self.choice:
            with torch.inference_mode():
                self.choice[rows] = self._choose(rows)
            _save_choices("trunk_linears", self.ident, {rows: self.choice[rows]})
        kind = self.choice[rows]
        return contextlib.nullcontext() if kind == "linear" else _LinearKernel(self.KINDS[kind])


class LMHead:
    """The vocabulary projection of a decode step (``rows`` hidden states -> ``rows`` x V logits), computed in the
    fastest exact layout for the row count at hand, chosen by measurement on this machine.

    The layouts are the same products in another memory order or kernel, no approximation: ``linear``
    (``F.linear(h, W)``, what transformers does), ``wh`` (``W @ h.T``: the head streamed once as the left operand,
    which BLAS handles well for few rows), both over blocks of 8192 vocabulary rows (views of W, written into one
    output), and ``onednn`` (oneDNN's linear kernel on the same fp32 weights, where torch has it: on some CPUs,
    e.g. AMD EPYC, BLAS's few-row product runs far below the memory bandwidth and oneDNN's does not). None
    copies the weights (extra memory: the logits only). The first time a row count is seen, each layout is timed
    on the real hidden states (after a warm-up) and the fastest kept; the choice is saved under the cache dir
    for this machine (CPU, threads, torch, head shape), so later runs compute the same logits without probing again
    (a choice that differs in the last float bits could otherwise flip a top-p boundary between runs). On CUDA the
    plain ``F.linear`` is kept (cuBLAS picks its own kernels). :attr:`timings` holds the probe's ms per layout."""

    BLOCK = 8192

    def __init__(self, weight: torch.Tensor, softcap: float | None, probe: bool, fixed: str | None = None) -> None:
        self.weight = weight
        self.softcap = softcap
        self.layouts = {"linear": self._linear, "wh": self._wh, "linear_blocks": self._linear_blocks,
                        "wh_blocks": self._wh_blocks}
        if _onednn_usable(weight):
            self.layouts["onednn"] = self._onednn
        # a fixed layout (decode_kernels=onednn; the plain linear where oneDNN does not apply): never measured
        self.fixed = (fixed if fixed in self.layouts else "linear") if fixed else None
        self.probe = probe and not self.fixed
        self.choice: dict[int, str] = self._saved() if self.probe else {}
        self.timings: dict[int, dict[str, float]] = {}

    @classmethod
    def split(cls, model: Any, device: torch.device, fixed: str | None = None) -> tuple[Any, LMHead | None]:
        """(trunk, head) when the model is a decoder trunk + a bias-free linear head (most causal LMs), else
        (None, None): the engine then calls the whole model."""
        prefix = getattr(model, "base_model_prefix", "model")
        trunk = getattr(model, prefix, None)
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if (trunk is None or not isinstance(head, torch.nn.Linear) or head.bias is not None
                or type(model).__name__.startswith("Peft") or not isinstance(trunk, torch.nn.Module)):
            return None, None
        if "logits_to_keep" not in forward_params(type(model).forward):  # an unusual head path: the model's own
            return None, None
        softcap = getattr(model.config, "final_logit_softcapping", None)
        return trunk, cls(head.weight, softcap, probe=device.type == "cpu", fixed=fixed)

    # the layouts -------------------------------------------------------------------------------------------
    def _linear(self, h: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(h, self.weight)

    def _wh(self, h: torch.Tensor) -> torch.Tensor:
        return torch.mm(self.weight, h.t()).t()

    def _linear_blocks(self, h: torch.Tensor) -> torch.Tensor:
        w = self.weight
        out = torch.empty((h.shape[0], w.shape[0]), dtype=h.dtype, device=h.device)
        for j in range(0, w.shape[0], self.BLOCK):
            torch.mm(h, w[j:j + self.BLOCK].t(), out=out[:, j:j + self.BLOCK])
        return out

    def _onednn(self, h: torch.Tensor) -> torch.Tensor:
        return _onednn_linear(h, self.weight)

    def _wh_blocks(self, h: torch.Tensor) -> torch.Tensor:
        w = self.weight
        out = torch.empty((w.shape[0], h.shape[0]), dtype=h.dtype, device=h.device)
        ht = h.t().contiguous()
        for j in range(0, w.shape[0], self.BLOCK):
            torch.mm(w[j:j + self.BLOCK], ht, out=out[j:j + self.BLOCK])
        return out.t()

    # the choice --------------------------------------------------------------------------------------------
    def _ident(self) -> str:
        return f"{tuple(self.weight.shape)}|{self.weight.dtype}|{','.join(self.layouts)}"

    def _saved(self) -> dict[int, str]:
        return {k: v for k, v in _load_choices("lm_head", self._ident()).items() if v in self.layouts}

    def _save(self) -> None:
        _save_choices("lm_head", self._ident(), self.choice)

    def _choose(self, h: torch.Tensor) -> str:
        times = {name: best_of(lambda fn=fn: fn(h)) * 1000 for name, fn in self.layouts.items()}
        self.timings[h.shape[0]] = times
        return min(times, key=times.__getitem__)

    @torch.no_grad()
    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        """[rows, 1, D] hidden states -> [rows, 1, V] logits (softcapped like the model's own head); sampling
        only, so never under autograd (the ``out=`` layouts could not be)."""
        h = hidden[:, -1, :]
        rows = h.shape[0]
        if self.fixed:
            self.choice[rows] = self.fixed
        elif self.probe and rows not in self.choice:
            self.choice[rows] = self._choose(h)
            self._save()
        logits = self.layouts[self.choice.get(rows, "linear")](h)
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits[:, None, :]


class DecodeKernels:
    """The engine's decode-step strategy over one model. ``auto`` (the default): on the CPU in fp32, the vocabulary
    projection of a decode step runs in the layout :class:`LMHead` measured fastest for the row count, and the
    trunk's linear layers in the kernel :class:`TrunkLinears` measured fastest; elsewhere (CUDA, other dtypes,
    models without a plain linear head) there is nothing to choose. ``onednn``: the same two places always in oneDNN's
    kernel, measured nowhere (a timing probe can pick differently on two machines of one kind, which moves the last
    float bits: what a regression gate must not depend on). ``off``: the model's own forward everywhere
    (transformers' kernels; the reference the others are tested against). Engines over the same loaded model share
    one strategy per mode (the measurements are per model and machine)."""

    def __init__(self, model: Any, device: torch.device, mode: str = "auto") -> None:
        if mode not in MODES:
            raise ValueError(f"decode_kernels={mode!r}: expected one of {', '.join(MODES)}")
        self.mode = mode
        fixed = "onednn" if mode == "onednn" else None
        self.trunk, self.head = LMHead.split(model, device, fixed) if mode != "off" else (None, None)
        self.linears = TrunkLinears.of(self.trunk, fixed) if device.type == "cpu" else None

    @classmethod
    def for_model(cls, model: Any, device: torch.device, mode: str = "auto") -> DecodeKernels:
        """The strategy of ``model`` in ``mode``, one per loaded model (kept beside it, never on it)."""
        per_model = _SHARED.setdefault(model, {})
        if mode not in per_model:
            per_model[mode] = cls(model, device, mode)
        return per_model[mode]

    @property
    def active(self) -> bool:
        """Whether a decode step runs anything but the model's own forward."""
        return self.head is not None

    def key(self) -> str:
        """What the choices depend on, for the results, the journal key and the candidate store's key: ``off``, or
        ``auto`` and the machine whose saved choices it uses (``auto`` alone where there is nothing to choose)."""
        if not self.active or self.mode == "onednn":
            return self.mode
        return f"auto@{_digest(machine())}"

    def record(self) -> dict[str, Any]:
        """The strategy and the choices made so far (row count -> kernel), for the results' config."""
        out: dict[str, Any] = {"mode": self.mode, "key": self.key()}
        if self.head is not None and self.head.choice:
            out["lm_head"] = {str(k): v for k, v in sorted(self.head.choice.items())}
        if self.linears is not None and self.linears.choice:
            out["trunk_linears"] = {str(k): v for k, v in sorted(self.linears.choice.items())}
        return out

    def decode(self, rows: int) -> contextlib.AbstractContextManager:
        """Within: one decode step of ``rows`` rows (the trunk's linear layers in the chosen kernel)."""
        return self.linears.decode(rows) if self.linears is not None else contextlib.nullcontext()


_SHARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
