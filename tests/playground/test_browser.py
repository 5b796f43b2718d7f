"""End to end in a real browser: Debian's Chromium, headless, driven by Playwright for Python.

The server is ``chainrule playground --no-browser`` in a subprocess; the browser is the
``chromium`` on PATH (``apt-get install chromium``; ``.ci/run`` installs it), launched with a
fresh profile, no downloads (Playwright's own browsers are never installed). Set
``CHAINRULE_PLAYGROUND_SCREENSHOTS=docs/images`` to write the screenshots there (the README's
picture); by default they go to a temporary folder.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule.playground.data import make_data
from chainrule.playground.state import PlaygroundState

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT = 180_000  # ms: an upper bound for a state to be reached on a loaded machine, not a timing


def _chromium() -> str:
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
    )
    if path is None:
        pytest.fail(
            "the browser tests need Debian's chromium on PATH: apt-get install -y chromium "
            "(.ci/run does)"
        )
    return path


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = os.environ.get("CHAINRULE_PLAYGROUND_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def server():
    env = dict(
        os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "chainrule", "playground", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+)/\?token=(\S+)", line)
    if m is None:
        proc.kill()
        pytest.fail(f"chainrule playground printed {line!r} and {proc.stdout.read()!r}")
    yield {"base": m.group(1), "token": m.group(2), "url": m.group(0)}
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # a failure, not a skip: these tests must run in CI
        pytest.fail("the browser tests need playwright (pip install -e '.[dev]')")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=_chromium(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1620, "height": 1000},
            accept_downloads=True,
            bypass_csp=True,  # the page's CSP forbids eval, which Playwright's waits use
        )
        pg = ctx.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.errors = errors
        pg.goto(server["url"])
        pg.wait_for_function("window.playground && window.playground.ready", timeout=WAIT)
        yield pg
        ctx.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def _get(server, path: str) -> bytes:
    sep = "&" if "?" in path else "?"
    with urllib.request.urlopen(f"{server['base']}{path}{sep}token={server['token']}") as r:
        return r.read()


def _hash(page) -> str:
    return page.evaluate("location.hash").lstrip("#")


def _pause(page) -> None:
    if page.evaluate("playground.playing"):
        page.click("#play")
    page.wait_for_function(
        "!playground.playing && playground.frame && !playground.frame.playing", timeout=WAIT
    )


def test_1_page_opens_with_the_default_state_in_its_hash(page):
    assert PlaygroundState.from_hash(_hash(page)) == PlaygroundState()
    assert page.locator("#network").is_visible()
    assert page.locator(".dataset.selected").get_attribute("data-name") == "circle"


def test_2_circle_trains_until_the_test_loss_is_below_0_1(page, shots):
    page.click("#play")
    page.wait_for_function(
        "playground.frame && playground.frame.testLoss !== null && playground.frame.testLoss < 0.1",
        timeout=WAIT,
    )
    frames = page.evaluate("playground.framesReceived")
    fps = page.evaluate("playground.fps")
    print(f"\nbrowser: {frames} frames received, {fps:.1f} frames/s")
    assert float(page.locator("#test-loss").get_attribute("data-value")) < 0.1
    page.locator("#show-test").check()
    page.screenshot(path=str(shots / "playground.png"))


def test_3_learning_rate_changes_mid_run_without_a_reset(page, server):
    step_before = page.evaluate("playground.frame.step")
    page.select_option("#lr", "0.1")
    page.wait_for_function("location.hash.includes('lr=0.1&')", timeout=WAIT)
    page.wait_for_function(
        f"playground.frame && playground.frame.step > {step_before + 100}", timeout=WAIT
    )
    steps = page.evaluate("playground.history.map(h => h.step)")
    assert all(b >= a for a, b in itertools.pairwise(steps))  # the step count never went back to 0
    assert page.evaluate("playground.playing")
    command = json.loads(_get(server, "/api/export/code"))["command"]
    assert "--lr 0.1 " in command


def test_4_clicking_a_link_shows_the_chain_rule_numbers_of_cr_explain(
    page, server, shots, tmp_path
):
    _pause(page)
    point = page.evaluate("playground.linkPoint(1, 2, 1)")  # hidden unit 2 -> unit 1 of layer 2
    page.mouse.click(point["x"], point["y"])
    page.wait_for_selector("#explain-total", timeout=WAIT)
    panel = page.locator("#explain")
    assert "2.weight[2,1]" in panel.inner_text()
    batch = [int(v) for v in panel.get_attribute("data-batch").split(",")]
    total = float(page.locator("#explain-total").get_attribute("data-value"))
    engine = float(page.locator("#explain-engine").get_attribute("data-value"))
    cells = page.locator("#explain-table tr.sample td[data-value]")
    shown = np.array(
        [float(cells.nth(k).get_attribute("data-value")) for k in range(cells.count())]
    )
    # the same weights (exported from the paused server) and the same rows, recomputed here
    path = tmp_path / "model.chainrule"
    path.write_bytes(_get(server, "/api/export/model"))
    model = cr.load(str(path))
    state = PlaygroundState.from_hash(_hash(page))
    pts = make_data(state)
    X = pts.X_train[batch]
    y = pts.y_train[batch].astype(np.float32).reshape(-1, 1)
    e = cr.explain(model, X, y, cr.nn.BCEWithLogitsLoss(), "2.weight[2,1]")
    assert total == e.total and engine == e.engine_grad
    rows = np.stack([e.dC_da, e.da_dz, e.dz_dw, e.per_sample], 1)[: len(shown) // 4].ravel()
    np.testing.assert_array_equal(shown, rows)
    page.screenshot(path=str(shots / "playground-explain.png"))


def test_5_three_classes_train_with_softmax(page, shots):
    page.select_option("#classes", "3")
    page.wait_for_function("playground.network && playground.network.outputs === 3", timeout=WAIT)
    assert "classes=3" in _hash(page)
    page.click("#play")
    page.wait_for_function(
        "playground.frame && playground.frame.step > 300 && playground.frame.outputs === 3",
        timeout=WAIT,
    )
    _pause(page)
    assert page.locator("#confusion tr").count() == 4  # header + 3 classes
    page.screenshot(path=str(shots / "playground-3-classes.png"))


def _points_csv(path: Path) -> None:
    rng = np.random.default_rng(3)
    lines = ["length,width,depth,colour,species"]
    for k in range(150):
        c = k % 3
        a, b, d = rng.normal(size=3) + np.array([2.5 * c, -2.5 * c, c])
        species = ["setosa", "versicolor", "virginica"][c]
        lines.append(f"{a:.3f},{b:.3f},{d:.3f},{['red', 'green'][k % 2]},{species}")
    path.write_text("\n".join(lines) + "\n")


def test_6_upload_a_csv_with_errors_shown_then_a_good_one(page, shots, tmp_path):
    bad = tmp_path / "broken.csv"
    bad.write_text("a,b\n1,2\n3\n")
    page.set_input_files("#upload-file", str(bad))
    page.click("#upload")
    page.wait_for_function(
        "document.getElementById('upload-error').textContent.length > 0", timeout=WAIT
    )
    assert "has 1 fields, the header has 2" in page.locator("#upload-error").inner_text()
    good = tmp_path / "species.csv"
    _points_csv(good)
    page.set_input_files("#upload-file", str(good))
    page.fill("#upload-target", "species")
    page.click("#upload")
    page.wait_for_function("playground.data && playground.data.csv", timeout=WAIT)
    assert page.locator("#upload-error").inner_text() == ""
    assert page.evaluate("playground.network.inputs") == [
        "length",
        "width",
        "depth",
        "colour=green",
        "colour=red",
    ]
    assert "dataset=csv" in _hash(page)
    assert page.locator("#view-picker").is_visible()
    page.select_option("#fy", "2")  # the boundary over length and depth
    page.wait_for_function("location.hash.includes('fy=2')", timeout=WAIT)
    page.click("#play")
    page.wait_for_function(
        "playground.frame && playground.frame.step > 200"
        " && playground.frame.metrics.confusion.length === 3",
        timeout=WAIT,
    )
    _pause(page)
    assert float(page.evaluate("playground.frame.metrics.testAccuracy")) > 0.6  # chance: 1/3
    page.screenshot(path=str(shots / "playground-csv.png"))


def test_7_export_the_model_and_load_it_with_cr_load(page, tmp_path):
    with page.expect_download() as info:
        page.click("#export-model")
    path = tmp_path / "model.chainrule"
    info.value.save_as(str(path))
    model = cr.load(str(path))
    meta = cr.io.load_file(str(path)).extra
    prep = cr.data.tabular.TabularPreprocessor.from_dict(meta["preprocessing"])
    assert prep.target == "species" and prep.classes == ["setosa", "versicolor", "virginica"]
    widths = [m.out_features for m in model if isinstance(m, cr.nn.Linear)]
    assert widths[-1] == 3
    page.click("#show-code")
    page.wait_for_function(
        "document.getElementById('code-command').textContent.length > 0", timeout=WAIT
    )
    command = page.locator("#code-command").inner_text()
    assert command.startswith("chainrule train --data species.csv --target species")
    assert "cr.nn.mlp(" in page.locator("#code-python").inner_text()


def test_8_a_shared_link_warns_live_and_a_neuron_click_shows_its_histogram(page, server, tmp_path):
    """Open a link to a deep sigmoid network: the gradient-flow box warns while it trains;
    clicking a hidden neuron shows the histogram of its outputs over the training points
    (the counts of np.histogram on the exported model's activations) and its gradient."""
    link = "dataset=circle&layers=8,8,8,8,8,8&activation=sigmoid&lr=0.03"
    page.evaluate(f"location.hash = {link!r}")
    page.wait_for_function(
        "playground.network && playground.network.layers.length === 6", timeout=WAIT
    )
    assert PlaygroundState.from_hash(_hash(page)) == PlaygroundState.from_hash(link)
    page.click("#play")
    page.wait_for_function(
        "[...document.querySelectorAll('#warnings li')].some("
        "li => /^(vanishing gradients|saturated units)/.test(li.textContent))",
        timeout=WAIT,
    )
    _pause(page)
    point = page.evaluate("playground.neuronPoint(2, 3)")  # hidden layer 2, unit 3
    page.mouse.click(point["x"], point["y"])
    page.wait_for_function(
        "playground.lastNeuron && !document.getElementById('neuron').hidden", timeout=WAIT
    )
    r = page.evaluate("playground.lastNeuron")
    assert (r["layer"], r["unit"]) == (2, 3)
    path = tmp_path / "model.chainrule"
    path.write_bytes(_get(server, "/api/export/model"))
    model = cr.load(str(path))
    X = make_data(PlaygroundState.from_hash(link)).X_train
    with cr.no_grad():
        a = model[3](model[2](model[1](model[0](X)))).data[:, 3]
    counts, _ = np.histogram(a, bins=20)
    assert sum(r["counts"]) == len(X)
    # the same weights and rows: the same counts (a point on a bin's edge may fall either way
    # if the two processes' BLAS round differently)
    assert np.abs(np.array(r["counts"]) - counts).sum() <= 2
    assert page.locator("#neuron-grad").inner_text() != "–"
    painted = page.evaluate(
        "(() => { const c = document.getElementById('histogram');"
        " return c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
        ".reduce((n, v, k) => n + (k % 4 === 3 && v > 0 ? 1 : 0), 0); })()"
    )
    assert painted > 0  # the bars are drawn
