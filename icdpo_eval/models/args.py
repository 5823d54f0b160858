"""model_args parsing shared by every lm-eval wrapper: each parser names the option and what it allows."""

from __future__ import annotations

from typing import Any

# keys lm-eval's CLI may inject; accepted and ignored when they carry no meaning for us
IGNORED_ARGS = {"max_batch_size", "trust_remote_code_warning"}


def choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    value = str(value)
    if value not in allowed:
        raise ValueError(f"model_arg {name}={value!r} is not one of: {', '.join(allowed)}")
    return value


def as_int(name: str, value: Any, minimum: int = 0) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"model_arg {name}={value!r} must be an integer") from None
    if out < minimum:
        raise ValueError(f"model_arg {name}={value!r} must be >= {minimum}")
    return out


def as_float(name: str, value: Any, lo: float, hi: float) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"model_arg {name}={value!r} must be a number") from None
    if not lo <= out <= hi:
        raise ValueError(f"model_arg {name}={value!r} must be in [{lo}, {hi}]")
    return out


def as_bool(name: str, value: Any) -> bool:
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"model_arg {name}={value!r} must be true or false")


def as_batch_size(value: Any, auto: int = 1) -> int:
    bs = str(value)
    return auto if bs.startswith("auto") else as_int("batch_size", bs, 1)


def check_unknown(method: str, unknown: dict[str, Any]) -> None:
    bad = sorted(set(unknown) - IGNORED_ARGS)
    if bad:
        raise ValueError(f"unknown model_arg(s) for --model {method}: {', '.join(bad)}; see the README's options")


def check_model_path(name: str, value: str | None) -> None:
    """A model named by a local path must be there: fail before any weights load, with what to do.

    Hub names (``org/model``), ``embedded:*`` aliases and ``openai:*`` teachers pass through; a value that
    looks like a path (absolute, ``./``, ``../``, ``~``, or more than one ``/``) must be an existing folder
    with a ``config.json``."""
    import os
    from pathlib import Path

    if not value or value.startswith(("embedded:", "openai:")):
        return
    path = Path(os.path.expanduser(value))
    looks_local = value.startswith(("/", "./", "../", "~", ".\\")) or value.count("/") > 1
    if looks_local and not path.exists():
        raise ValueError(f"model_arg {name}={value!r}: no such local folder; give an existing model folder "
                         "(with config.json) or a hub name like 'org/model'")
    if path.is_dir() and not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        raise ValueError(f"model_arg {name}={value!r}: the folder has no config.json, so it is not a Hugging Face "
                         "model folder; point at the folder that holds config.json and the weights")
