"""The instruction lines as an input (model_arg ``instructions``): ours, a file, or the released lines fetched from
the authors' repository at the pinned commit, checked against their pinned sha256 and cached; offline, one line
naming a file to pass."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest
from conftest import SHARED_DATA, require_shared

from icdpo_eval.errors import OptionError
from icdpo_eval.method import instructions as I
from icdpo_eval.method.prompts import HH, SYNTHETIC

REFERENCE = SHARED_DATA.parent / "fidelity" / "released_reference.json"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ICDPO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_ours_is_the_default_and_a_file_replaces_both_lines(tmp_path):
    assert I.load(None) is I.OURS and I.load("ours").for_family("hh") is None
    f = tmp_path / "lines.json"
    f.write_text(json.dumps({"positive": "#Be kind:", "negative": "#Be unkind:"}))
    got = I.load(str(f))
    assert got.for_family("hh") == got.for_family("synthetic") == ("#Be kind:", "#Be unkind:")
    assert got.info["instructions_sha256"] == got.sha256 and got.info["instructions_source"].startswith("file ")
    tpl = HH.with_instructions(*got.for_family("hh"))
    assert tpl.context("\n\nHuman: hi\n\nAssistant:", []).startswith("#Be kind:\n\n##")
    assert SYNTHETIC.with_instructions("#a", "#b").negative_instruction == "#b"


@pytest.mark.parametrize("content,match", [
    ("not json", "not valid UTF-8 JSON"),
    ('{"positive": "#a"}', "exactly the keys positive and negative"),
    ('{"positive": "#a", "negative": ""}', "'negative' must be a non-empty string"),
    ('{"positive": "#a\\nmore", "negative": "#b"}', "must be one line"),
])
def test_a_bad_file_is_one_line_naming_it(tmp_path, content, match):
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(OptionError, match=match):
        I.load(str(f))
    with pytest.raises(OptionError, match="not ours, released, nor an existing file"):
        I.load(str(tmp_path / "missing.json"))


def test_released_offline_fails_at_once_naming_a_file(cache, monkeypatch):
    monkeypatch.setattr(I, "RAW_URL", "http://127.0.0.1:9/{repo}/{commit}/{path}")  # nothing listens on port 9
    with pytest.raises(OptionError, match=r"instructions=released: could not fetch .*pass instructions=FILE"):
        I.load("released")


def _serve(files: dict[str, str]):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = files.get(self.path.split("/", 4)[-1])
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write((body or "").encode())

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _released_sources(pos: str, neg: str, syn_pos: str = "#s", syn_neg: str = "#t") -> dict[str, str]:
    """Stand-ins for the released files: the lines at the released line numbers, nothing else of theirs."""
    def src(n_pos: int, n_neg: int, a: str, b: str) -> str:
        lines = ["# filler"] * 60
        lines[n_pos - 1] = f"        instruction = {json.dumps(a)}"
        lines[n_neg - 1] = f"        instruction = {json.dumps(b)}"
        return "\n".join(lines)

    hh, syn = I.RELEASED["hh"], I.RELEASED["synthetic"]
    return {hh.path: src(hh.positive_line, hh.negative_line, pos, neg),
            syn.path: src(syn.positive_line, syn.negative_line, syn_pos, syn_neg)}


def test_released_lines_are_checked_against_their_pinned_hash(cache, monkeypatch):
    srv = _serve(_released_sources("#some other line", "#and another"))
    monkeypatch.setattr(I, "RAW_URL", f"http://127.0.0.1:{srv.server_port}/{{repo}}/{{commit}}/{{path}}")
    with pytest.raises(OptionError, match="do not match their pinned sha256"):
        I.load("released")
    srv.shutdown()


def test_released_lines_fetched_once_then_cached(cache, monkeypatch):
    """With the real lines (read from the reference at test time), the fetch passes its check and is cached:
    the second load needs no network."""
    ref = json.loads(require_shared(REFERENCE).read_text())["released_instruction_lines"]
    sources = _released_sources(ref["pos"], ref["neg"])
    # the SyntheticGPT lines are not in the reference: pin this test's stand-ins instead
    monkeypatch.setitem(I.RELEASED, "synthetic", I.ReleasedLines(I.RELEASED["synthetic"].path, 49, 51, I._sha("#s"),
                                                                 I._sha("#t")))
    srv = _serve(sources)
    monkeypatch.setattr(I, "RAW_URL", f"http://127.0.0.1:{srv.server_port}/{{repo}}/{{commit}}/{{path}}")
    got = I.load("released")
    assert got.for_family("hh") == (ref["pos"], ref["neg"]) and got.source.startswith("github.com/F2-Song/ICDPO@")
    srv.shutdown()
    monkeypatch.setattr(I, "RAW_URL", "http://127.0.0.1:9/{repo}/{commit}/{path}")
    assert I.load("released").for_family("hh") == (ref["pos"], ref["neg"])  # from the cache
    assert list((cache / "cache" / "instructions").glob("released-*.json"))
    assert not Path(I.__file__).read_text().count(ref["pos"][10:60])  # the package ships no copy of them
