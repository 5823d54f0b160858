"""One declared configuration: each option is declared once (icdpo_eval.config.options), the docs' tables are generated
from the declarations, and the environment variables the package reads are exactly the documented ones."""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import replace
from pathlib import Path

import pytest

from icdpo_eval.config import options, settings
from icdpo_eval.errors import OptionError

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "icdpo_eval", ROOT / "baselines", ROOT / "tasks"]


def _sync_docs():
    spec = importlib.util.spec_from_file_location("sync_docs", ROOT / "scripts" / "sync_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_docs_tables_equal_the_declarations():
    sync = _sync_docs()
    blocks = sync.all_blocks()
    seen = set()
    for path in sync.doc_files():
        text = path.read_text(encoding="utf-8")
        new, stale = sync.sync(text, blocks)
        assert not stale, f"{path.name}: generated tables {stale} differ from icdpo_eval/options.py; run " \
                          "python scripts/sync_docs.py"
        seen |= {m.group("name") for m in sync.BLOCK.finditer(text)}
    # every model's table, the task settings and the environment are in the docs
    commands = {"train options", "borrow options", "build-rank-set options"}
    assert {f"options {m}" for m in options.MODELS} | {"task settings", "environment"} | commands <= seen


def test_a_changed_doc_table_is_caught():
    sync = _sync_docs()
    blocks = options.generated_blocks()
    text = (ROOT / "docs" / "options.md").read_text(encoding="utf-8")
    planted = text.replace("| `k` | 2 |", "| `k` | 3 |", 1)
    assert planted != text
    assert "options icdpo" in sync.sync(planted, blocks)[1]


def _env_reads(path: Path) -> list[str]:
    """`os.environ` / `os.getenv` uses in a source file (the call sites, as text)."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv") and \
                isinstance(node.value, ast.Name) and node.value.id == "os":
            out.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return out


def test_the_environment_is_read_in_the_settings_module_only():
    reads = [r for src in SOURCES for p in sorted(src.rglob("*.py")) for r in _env_reads(p)]
    assert all(r.startswith("icdpo_eval/config/settings.py:") for r in reads), reads
    # settings.py reads each variable by name through _get (declared) or check_moved (the moved ones)
    text = (ROOT / "icdpo_eval" / "config" / "settings.py").read_text()
    read_by_name = set(re.findall(r'_get\("([A-Z_]+)"\)', text))
    assert read_by_name == settings.NAMES, (read_by_name ^ settings.NAMES)
    assert not set(settings.MOVED) & settings.NAMES


def test_the_documented_environment_is_the_declared_one():
    doc = (ROOT / "docs" / "options.md").read_text()
    table = doc.split("<!-- generated: environment -->")[1].split("<!-- end generated -->")[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", table, flags=re.M))
    assert documented == settings.NAMES


def test_moved_variables_fail_naming_their_replacement(monkeypatch):
    for name, instead in settings.MOVED.items():
        monkeypatch.setenv(name, "x")
        with pytest.raises(settings.MovedVariableError, match=re.escape(instead)):
            settings.check_moved()
        monkeypatch.delenv(name)
    settings.check_moved()


def test_every_model_parses_its_defaults_and_names_bad_values():
    for name, decl in options.MODELS.items():
        cfg = decl.parse({})
        assert set(cfg) == set(decl.names()) and not cfg.explicit
        for opt in decl:
            assert opt.doc and opt.allowed(), (name, opt.name)
    with pytest.raises(OptionError, match=r"--model icdpo model_arg seed='x': must be integer >= 0"):
        options.ICDPO.parse({"seed": "x"})
    with pytest.raises(OptionError, match=r"unknown --model rm_bon model_arg\(s\) scorer; --model rm_bon takes: "):
        options.RM_BON.parse({"scorer": "s"})
    assert options.SFT_LORA.parse({"peft": "/a"}).adapter == "/a"  # lm-eval's name for adapter=
    with pytest.raises(OptionError, match="both given"):
        options.SFT_LORA.parse({"peft": "/a", "adapter": "/b"})
    assert options.ICDPO.parse({"dtype": "bf16"}).dtype == "bfloat16"
    assert options.ICDPO.parse({"k": 3.0}).k == 3  # lm-eval's parser reads "3" / "-1" as numbers


def test_shared_options_are_declared_once_and_mean_the_same_everywhere():
    for opt in options.COMMON:
        holders = [m for m, d in options.MODELS.items() if opt.name in d]
        # the same option, up to what batch_size=auto means for the model (docs/options.md shows it per model)
        same = {m for m in holders if options.MODELS[m][opt.name] in
                (opt, *([options.BATCH_SIZE_AUTO_1] if opt is options.BATCH_SIZE else []))}
        # sft_lora / dpo take their adapter's base by default; rm's dtype defaults to float32 (as released)
        assert same >= set(holders) - {"sft_lora", "dpo", "rm"}, (opt.name, holders, same)
    # batch_size=auto means what the docs say it means, for every model that takes it
    for m, d in options.MODELS.items():
        if "batch_size" in d and d["batch_size"].auto is not None:
            assert d["batch_size"].shown == f"{d['batch_size'].default} (auto: {d['batch_size'].auto})", m
    # the same meaning everywhere; w2s, URIAL and ARGS only default a sampling option to their paper's setting
    own_defaults = {"w2s", "urial", "args"}
    for group in (options.SAMPLING, options.RETRIEVAL, options.CONTRASTIVE, (options.DIALOGUE,)):
        for opt in group:
            for m, d in options.MODELS.items():
                if opt.name in d:
                    mine = d[opt.name]
                    assert mine == opt or (m in own_defaults and mine.default is not None and
                                           replace(mine, default=None, shown=opt.shown) == opt), (m, opt.name)


def test_model_classes_use_their_declarations():
    for name in options.TARGETS:
        assert options.model_class(name).OPTIONS is options.MODELS[name]


def test_results_record_every_option(monkeypatch):
    from icdpo_eval.models.icdpo import ICDPOLM

    lm = ICDPOLM.preview(scorer="s_hat", k=1, temperature=0.5)
    info = lm.get_model_info()
    assert set(options.ICDPO.names()) <= set(info)
    assert info["scorer"] == "s_hat" and info["k"] == 1 and info["instructions_sha256"] == "ours"
    assert lm.journal().config_hash != ICDPOLM.preview(scorer="s_hat", k=1).journal().config_hash
    # an option that does not change results does not change the journal
    assert ICDPOLM.preview(batch_size=4).journal().config_hash == ICDPOLM.preview().journal().config_hash

