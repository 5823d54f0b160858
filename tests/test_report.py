"""The HTML report (icdpo_eval/report/html.py): its data, its escaping, its errors, and the page in a real browser
(headless Debian Chromium through selenium; skipped without it outside CI, a failure in CI)."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import pytest
from conftest import in_ci

from icdpo_eval import leaderboard as lb
from icdpo_eval.report import html, pages

HOSTILE = "<script>window.__pwned = 1</script></textarea><img src=x onerror=\"window.__pwned = 2\">&amp;"


def _sample(doc_id: int, response: str, reward: float, details: dict | None = None) -> dict:
    smp = {"doc_id": doc_id, "doc": {"prompt": f"\n\nHuman: question {doc_id} {HOSTILE}\n\nAssistant:",
                                     "chosen": " yes", "rejected": " no"},
           "filtered_resps": [response], "rm_reward": {"reward": reward, "response": response}, "length": 3}
    if details is not None:
        smp["icdpo_eval"] = details
    return smp


def _lm_eval_folder(root: Path, model: str, args: dict, samples: list[dict], stamp: str) -> Path:
    folder = root / model
    folder.mkdir(parents=True)
    res = {"results": {"hh_harmless_mini": {"rm_reward,none": 100 * sum(s["rm_reward"]["reward"] for s in samples)
                                            / len(samples), "rm,none": "proxy:test"}},
           "config": {"model": model, "model_args": args}, "date": 1.7e9, "git_hash": "abc1234",
           "higher_is_better": {"hh_harmless_mini": {"rm_reward": True}},
           "configs": {"hh_harmless_mini": {"dataset_path": "json"}}}
    (folder / f"results_{stamp}.json").write_text(json.dumps(res))
    with open(folder / f"samples_hh_harmless_mini_{stamp}.jsonl", "w") as fh:
        for s in samples:
            fh.write(json.dumps(s) + "\n")
    return folder


DETAILS = {"candidates": ["a", HOSTILE, ""], "scores": [0.5, 1.5, -math.inf], "index": 1,
           "terms": {"log p(y | d+, x)": [-3.0, -2.0, 0.0], "log p(y | x)": [-3.5, -3.5, 0.0]},
           "demos": [{"id": "pool/1", "prompt": "\n\nHuman: hi\n\nAssistant:", "chosen": " hello", "rejected": " go"}]}


def _page_data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert m, "the page carries its data as JSON"
    return json.loads(m.group(1))


def test_report_of_lm_eval_folders_carries_every_document_and_escapes_the_text(tmp_path):
    _lm_eval_folder(tmp_path, "icdpo", {"scorer": "s"}, [_sample(0, HOSTILE, 0.2, DETAILS),
                                                         _sample(1, "fine", -0.1, DETAILS)], "2026-01-01T00-00-00.1")
    _lm_eval_folder(tmp_path, "hf", {"pretrained": "embedded:base"}, [_sample(0, "plain", 0.1),
                                                                      _sample(1, "", 0.0)], "2026-01-01T00-00-00.2")
    path = pages.report([tmp_path], tmp_path / "page.html")
    page = path.read_text()
    # nothing of the data reaches the markup unescaped: the only <script> tags are the page's own two
    assert "window.__pwned" not in page.split('id="report-data">')[0]
    assert page.count("<script") == 2 and "</textarea>" not in page and "<img src=x" not in page
    data = _page_data(page)
    assert set(data["rows"]) == {"icdpo (scorer=s)", "hf (pretrained=embedded:base)"}
    got = data["results"]["icdpo (scorer=s)"]["hh_harmless_mini"]
    assert got["0"]["response"] == HOSTILE  # the text itself survives, to be shown as text
    det = got["0"]["details"]
    assert det["candidates"] == DETAILS["candidates"] and det["index"] == 1
    assert det["scores"] == [0.5, 1.5, None]  # -inf has no JSON form: shown as "–"
    assert data["demos"][det["demos"][0]]["chosen"] == " hello"
    assert "details" not in data["results"]["hf (pretrained=embedded:base)"]["hh_harmless_mini"]["0"]
    # the table: one line per row, the value lm-eval reported, n documents
    table = {e["row"]: e for e in data["table"]}
    assert table["icdpo (scorer=s)"]["value"] == pytest.approx(5.0) and table["icdpo (scorer=s)"]["n"] == 2
    assert data["warning"] == html.CONTENT_WARNING and "<svg" in page


def test_several_folders_make_one_page(tmp_path):
    _lm_eval_folder(tmp_path / "a", "icdpo", {"scorer": "s"}, [_sample(0, "x", 0.2, DETAILS)], "2026-01-01T00-00-00.1")
    _lm_eval_folder(tmp_path / "b", "icdpo", {"scorer": "s"}, [_sample(0, "y", 0.4, DETAILS)], "2026-01-01T00-00-00.2")
    data = _page_data(pages.report([tmp_path / "a", tmp_path / "b"], tmp_path / "both.html").read_text())
    # the same row name from two folders: numbered, both kept
    assert data["rows"] == ["icdpo (scorer=s)", "icdpo (scorer=s) #2"]
    assert data["results"]["icdpo (scorer=s) #2"]["hh_harmless_mini"]["0"]["response"] == "y"


def test_a_sample_without_a_prompt_field_shows_its_request_context():
    smp = {"doc_id": 0, "doc": {"question": "q"}, "arguments": {"gen_args_0": {"arg_0": "the context", "arg_1": {}}}}
    assert html._doc_view(smp)["prompt"] == "the context"
    assert html._doc_view({"doc_id": 0, "arguments": [["ctx", " y"]]})["prompt"] == "ctx"
    assert html._doc_view({"doc_id": 0})["prompt"] == ""


def test_report_errors_name_what_is_missing(tmp_path):
    with pytest.raises(html.ReportError, match="no lm-eval results .looked for results_"):
        pages.report([tmp_path], tmp_path / "x.html")
    folder = _lm_eval_folder(tmp_path, "icdpo", {}, [_sample(0, "a", 0.1)], "2026-01-01T00-00-00.1")
    next(folder.glob("samples_*")).unlink()
    with pytest.raises(html.ReportError, match="rerun lm_eval with --log_samples"):
        pages.report([tmp_path], tmp_path / "x.html")
    with pytest.raises(html.ReportError, match="does not exist"):
        pages.report([tmp_path / "nope"], tmp_path / "x.html")


def test_report_cli_exits_with_one_line(tmp_path, capsys):
    from icdpo_eval import cli

    rc = cli.main(["report", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc != 0 and "--log_samples" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------ in a real browser
def _driver():
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_bin = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    why = None
    try:
        from selenium import webdriver
    except ImportError:
        why = "selenium is not installed (pip install -e '.[dev]')"
    if why is None and not (Path(chromium).exists() and Path(driver_bin).exists()):
        why = "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    if why:
        if in_ci():
            pytest.fail(f"{why}; CI is set, so this is a failure, not a skip", pytrace=False)
        pytest.skip(f"{why} (skipped outside CI; fails when CI is set)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1500,1100"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver_bin))


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for this module's browser tests (a start costs seconds)."""
    driver = _driver()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def mini_page(request, tmp_path_factory, twins_dir) -> Path:
    """The mini leaderboard's page: ``--report-page lb`` (a finished ``icdpo-eval leaderboard
    leaderboards/mini.yaml --out lb``, as CI runs it) or else four of its rows on 2 documents, run here on the tiny
    twins (the page's behaviour does not depend on the models' quality)."""
    given = request.config.getoption("--report-page")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("lb")
    spec = lb.load_spec(Path(__file__).resolve().parents[1] / "leaderboards" / "mini.yaml")
    spec.rows = [r for r in spec.rows if r.name in ("Base", "ICDPO", "ICDPO+Ŝ", "Longest of N", "URIAL", "ARGS")]
    spec.limit, spec.gen_kwargs = 2, {"max_gen_toks": 4}
    # a module fixture is set up before the per-test ones: the twins and a journal of its own, set here
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ICDPO_EMBEDDED_DIR", str(twins_dir))
        mp.setenv("ICDPO_JOURNAL_DIR", str(tmp_path_factory.mktemp("lb-journal")))
        lb.run_leaderboard(spec, out)
    assert "proxy:bt-embedded-dir@" in (out / "leaderboard.md").read_text()  # scored through the twins' SBERT
    return out


def test_the_leaderboard_page_in_headless_chromium(browser, mini_page, request):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    out = mini_page
    page = out / "index.html"
    assert page.exists(), "icdpo-eval leaderboard writes index.html beside leaderboard.md"
    md_rows = [ln.split("|")[1].strip().removesuffix(" †") for ln in (out / "leaderboard.md").read_text().splitlines()
               if ln.startswith("| ") and not ln.startswith("| Method")]
    md_rows = list(dict.fromkeys(md_rows))
    docs = [json.loads(ln) for ln in (out / "documents.jsonl").read_text().splitlines() if ln.strip()]
    shots = request.config.getoption("--screenshots")
    driver = browser
    driver.get_log("browser")  # drop an earlier page's messages: only this page's below
    driver.get(page.resolve().as_uri())
    rows = [tr.get_attribute("data-row") for tr in driver.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr")]
    assert rows == md_rows  # every row of leaderboard.md, in its order
    assert driver.find_element(By.ID, "content-warning").text == html.CONTENT_WARNING
    assert driver.find_elements(By.CSS_SELECTOR, ".chart svg")
    assert not clipped_text(driver), clipped_text(driver)  # every title, label and legend inside the chart
    # the compute columns: each row's forward tokens per document, as leaderboard.csv has them
    with open(out / "leaderboard.csv", newline="") as fh:
        want_fwd = {r["row"]: r["forward_tokens"] for r in csv.DictReader(fh)}
    shown = {tr.get_attribute("data-row"): tr.find_element(By.CSS_SELECTOR, 'td[data-field="forward_tokens"]').text
             for tr in driver.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr")}
    assert {r: float(v) for r, v in shown.items() if v != "–"} == \
        pytest.approx({r: float(v) for r, v in want_fwd.items() if v}, abs=0.51)
    # sorting by the first column's value: descending, by the numbers in the cells
    driver.find_elements(By.CSS_SELECTOR, "#leaderboard thead th.sortable")[0].click()
    values = [float(tr.find_elements(By.CSS_SELECTOR, "td")[1].text.split(" [")[0])
              for tr in driver.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr")]
    assert values == sorted(values, reverse=True)
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(shots) / "table.png"))
    # a document of the ICDPO+Ŝ row: its candidates, their scores and the chosen one, as documents.jsonl has
    Select(driver.find_element(By.ID, "row-a")).select_by_visible_text("ICDPO+Ŝ")
    Select(driver.find_element(By.ID, "row-b")).select_by_visible_text("Base")
    first = driver.find_elements(By.CSS_SELECTOR, "#doc-list button")[0]
    doc_id = first.get_attribute("data-doc")
    first.click()
    panel = driver.find_element(By.ID, "panel-a")
    cands = panel.find_elements(By.CSS_SELECTOR, "tr.candidate")
    want = next(d for d in docs if d["row"] == "ICDPO+Ŝ" and str(d["doc_id"]) == doc_id)
    assert len(cands) == 3  # N = 3 candidates
    chosen = [c for c in cands if c.get_attribute("data-chosen") == "1"]
    assert len(chosen) == 1
    assert chosen[0].find_elements(By.CSS_SELECTOR, "td")[-1].text.strip() == want["response"].strip()
    scores = [c.find_element(By.CSS_SELECTOR, "td.score").text for c in cands]
    assert all(re.fullmatch(r"-?\d+\.\d{4}", s) for s in scores), scores
    best = max(range(3), key=lambda i: float(scores[i]))
    assert chosen[0].get_attribute("data-index") == str(best)  # Ŝ picked the highest score
    terms = panel.find_elements(By.CSS_SELECTOR, "table.candidates th")
    assert {"log p(y | d+, x)", "log p(y | d-, x)"} <= {t.text for t in terms}
    assert driver.find_element(By.ID, "panel-b").find_element(By.CSS_SELECTOR, ".response").text.strip() == \
        next(d for d in docs if d["row"] == "Base" and str(d["doc_id"]) == doc_id)["response"].strip()
    if shots:
        panel.find_element(By.TAG_NAME, "summary").click() if panel.find_elements(By.TAG_NAME, "summary") else None
        driver.save_screenshot(str(Path(shots) / "document.png"))
    # switch the side-by-side rows; the filter for the documents where they differ most
    Select(driver.find_element(By.ID, "row-b")).select_by_visible_text("ICDPO")
    assert driver.find_element(By.ID, "panel-b").get_attribute("data-row") == "ICDPO"
    Select(driver.find_element(By.ID, "sort-select")).select_by_value("differ")
    deltas = [abs(float(b.find_element(By.CSS_SELECTOR, ".delta").text.split()[1]))
              for b in driver.find_elements(By.CSS_SELECTOR, "#doc-list button")]
    assert deltas == sorted(deltas, reverse=True) and deltas
    if shots:
        driver.save_screenshot(str(Path(shots) / "side_by_side.png"))
    # the methods without candidates show what they did instead: ARGS's steps, W2S's beams, URIAL's prefix
    guided = [tr.find_elements(By.CSS_SELECTOR, "td")[0].text for tr in
              driver.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr") if tr.get_attribute("data-row") == "ARGS"]
    assert guided == ["ARGS †"]  # guided by the proxy RM that scores the table
    Select(driver.find_element(By.ID, "sort-select")).select_by_value("doc")
    for row, method in (("ARGS", "args"), ("URIAL", "urial"), ("W2S", "w2s")):
        if row not in md_rows:
            continue  # W2S needs the spec's trained adapter: in CI's full mini leaderboard, not in the small one here
        Select(driver.find_element(By.ID, "row-a")).select_by_visible_text(row)
        first = driver.find_elements(By.CSS_SELECTOR, "#doc-list button")[0]
        shown = first.get_attribute("data-doc")
        first.click()
        panel = driver.find_element(By.ID, "panel-a")
        box = panel.find_element(By.CSS_SELECTOR, "details.internals")
        assert box.get_attribute("data-method") == method
        want = next(d for d in docs if d["row"] == row and str(d["doc_id"]) == shown)
        if method == "args":  # one table row per decoded step, each naming the token taken
            steps = box.find_elements(By.CSS_SELECTOR, "table.args-steps tr")[1:]
            assert steps and len(steps) <= 16
        elif method == "w2s":  # the kept (✓) candidates of the last chunk hold the response
            last = box.find_elements(By.CSS_SELECTOR, "table.w2s-chunk")[-1]
            kept = [tr.find_elements(By.CSS_SELECTOR, "td")[-1].text.strip()
                    for tr in last.find_elements(By.CSS_SELECTOR, "tr.chosen")]
            assert want["response"].strip() in kept
        else:
            assert "prefix_sha256" in box.text
    assert driver.execute_script("return window.__pwned === undefined")
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def clipped_text(driver) -> list[str]:
    """The chart's text elements (matplotlib's ``text_*`` groups) whose box leaves the chart's SVG."""
    return driver.execute_script("""
        const svg = document.querySelector('.chart svg'); const box = svg.getBoundingClientRect(); const out = [];
        for (const g of svg.querySelectorAll('g[id^="text_"]')) {
          const r = g.getBoundingClientRect();
          if (r.width === 0 && r.height === 0) continue;
          if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1)
            out.push(g.id + ' ' + JSON.stringify([r.left, r.right, r.top, r.bottom]));
        }
        return out;""")


def test_the_compute_panel_draws_one_curve_per_swept_method(browser, tmp_path, twins_dir, monkeypatch):
    """A spec with two swept rows and one plain row: the page's chart has one curve per swept method (its SVG
    element ``curve-<row>``), nothing of it cut at the page's width, and the compute columns in the table."""
    from selenium.webdriver.common.by import By

    monkeypatch.setenv("ICDPO_EMBEDDED_DIR", str(twins_dir))
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: a spec whose title is long enough to reach the chart's left edge when it is not wrapped\n"
                    "tasks: [hh_harmless_mini]\nlimit: 1\nseed: 1234\ngen_kwargs: {max_gen_toks: 4}\n"
                    "metadata: {rm: proxy}\nrows:\n"
                    "  - {name: Longest, model: length_bon, model_args: {pick: longest}, sweep: {n: [1, 2]}}\n"
                    "  - {name: ICDPO, model: icdpo, sweep: {n: [1, 2]}}\n"
                    "  - {name: Single, model: icdpo, model_args: {scorer: icl, select: single}}\n")
    out = tmp_path / "lb"
    lb.run_leaderboard(lb.load_spec(spec), out)
    driver = browser
    driver.get((out / "index.html").resolve().as_uri())
    curves = sorted(e.get_attribute("id") for e in driver.find_elements(By.CSS_SELECTOR, '.chart svg g[id^="curve-"]'))
    assert curves == ["curve-ICDPO", "curve-Longest"]
    assert not clipped_text(driver), clipped_text(driver)
    header = driver.find_element(By.CSS_SELECTOR, "#leaderboard thead").text
    assert "forward tok / doc" in header and "generated / doc" in header


def test_hostile_text_shows_as_text_in_the_browser(tmp_path, browser):
    _lm_eval_folder(tmp_path, "icdpo", {"scorer": "s"}, [_sample(0, HOSTILE, 0.2, DETAILS)], "2026-01-01T00-00-00.1")
    _lm_eval_folder(tmp_path, "hf", {}, [_sample(0, "plain", 0.1)], "2026-01-01T00-00-00.2")
    page = pages.report([tmp_path], tmp_path / "page.html")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    driver.get_log("browser")  # drop an earlier page's messages: only this page's below
    driver.get(page.resolve().as_uri())
    Select(driver.find_element(By.ID, "row-a")).select_by_visible_text("icdpo (scorer=s)")
    driver.find_elements(By.CSS_SELECTOR, "#doc-list button")[0].click()
    panel = driver.find_element(By.ID, "panel-a")
    assert panel.find_element(By.CSS_SELECTOR, ".response").text == HOSTILE  # shown, as text
    assert HOSTILE in driver.find_element(By.ID, "dialogue").text
    assert driver.execute_script("return window.__pwned === undefined")  # and never run
    assert not driver.find_elements(By.CSS_SELECTOR, "#doc-view img")
    assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
