"""Watching a run: the CodeNet dashboard page (in headless Chromium), its counters against the
Trainer's ledger, the performance report, and the image of one step's task graph."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from codenet_dask.data import load_dataset
from codenet_dask.observe import COUNTS, JSON_ROUTE, PAGE, DashboardPublisher, Tally
from codenet_dask.observe.page import render_header
from codenet_dask.observe.taskgraph import render, step_graph
from codenet_dask.training import TrainConfig, Trainer

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
#: Copy the browser screenshots here too (the README's come from this: see docs/dashboard/).
SCREENSHOT_DIR = os.environ.get("CODENET_SCREENSHOT_DIR")


def base_url(client: Client) -> str:
    return client.dashboard_link.rsplit("/", 1)[0]


def fetch_json(base: str, run: str | None = None) -> dict:
    url = f"{base}/{JSON_ROUTE}" + (f"?run={run}" if run else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


# -- aggregation ------------------------------------------------------------------------------
def test_tally_folds_increments_per_run_layer_and_worker():
    tally = Tally()
    tally.apply({"kind": "start", "run": "a", "strategy": "codenet", "label": "x"})
    tally.apply(
        {
            "kind": "layers",
            "run": "a",
            "layers": [
                {
                    "name": "dense0",
                    "strategy": "codenet",
                    "grid": [2, 2],
                    "parity": [2, 2],
                    "blocks": {"w1": 8, "w2": 8},
                }
            ],
        }
    )
    for _ in range(2):
        tally.apply(
            {
                "kind": "step",
                "run": "a",
                "position": 3,
                "total": 9,
                "rollbacks": 1,
                "layers": {"dense0": {"detected": 2, "corrected": 1, "products": 1}},
                "workers": {"w1": {"detected": 2, "corrected": 1}},
            }
        )
    tally.apply({"kind": "step", "run": "b", "position": 1})  # a run this plugin never saw start
    tally.apply({"kind": "nonsense", "run": "a"})
    tally.apply("not even a dict")
    run = tally.snapshot("a")["run"]
    assert run["totals"]["detected"] == 4 and run["totals"]["corrected"] == 2 and run["totals"]["products"] == 2
    assert run["layers"][0]["shape"]["grid"] == [2, 2] and run["rollbacks"] == 1 and run["position"] == 3
    assert {w["worker"]: (w["blocks"], w["detected"]) for w in run["workers"]} == {"w1": (8, 4), "w2": (8, 0)}
    assert tally.snapshot()["runs"] == ["a", "b"] and tally.ignored == 2
    tally.apply({"kind": "start", "run": "a"})  # a restarted run starts from zero
    assert tally.snapshot("a")["run"]["totals"]["detected"] == 0


def test_a_quarantined_worker_is_shown_on_the_page():
    tally = Tally()
    tally.apply({"kind": "start", "run": "a", "strategy": "codenet", "label": "x"})
    quarantined = [{"worker": "1", "step": 4, "wrong": 8, "checked": 18, "score": 14.1}]
    tally.apply({"kind": "step", "run": "a", "position": 5, "total": 9, "quarantined": quarantined})
    tally.apply({"kind": "step", "run": "a", "position": 6, "total": 9})  # a step without the field keeps it
    run = tally.snapshot("a")["run"]
    assert run["quarantined"] == quarantined
    assert "Quarantined worker 1 at step 4: 8 of its 18 checked results were wrong" in render_header(run)


# -- counters == ledger -----------------------------------------------------------------------
def test_dashboard_counters_equal_the_trainers_ledger(client, tmp_path):
    """Zeroed block results force recomputations and (with 2 attempts) a rollback; exponent flips in updates
    leave wrong stored blocks that scrubs repair. What the page counts, summed from the events the
    run published, must equal what the Trainer's own ledger holds at the end."""
    data = load_dataset("digits", seed=0)
    config = TrainConfig(
        hidden=(16,),
        epochs=1,
        batch_size=128,
        lr=0.5,
        grid=2,
        parity=(2, 2),
        faults="zero:0.06:steps=block-forward+block-backward,nan:0.2:steps=block-forward,bitflip:0.04:field=exponent:steps=update",
        checkpoint_every=4,
        scrub_every=2,
        max_attempts=2,
        seed=3,
    )
    trainer = Trainer(client, data, config, tmp_path / "store")
    publisher = DashboardPublisher(trainer, client)  # registers the plugin itself
    trainer.subscribers.append(publisher)
    summary = trainer.run()
    run = fetch_json(base_url(client), publisher.run_id)["run"]
    ledger = trainer.ledger
    assert run["status"] == "finished" and run["position"] == run["total"] == summary.iterations
    assert run["final"] == summary.faults and run["rollbacks"] == summary.faults["rollbacks"] > 0

    expected = {}
    for layer in trainer.layers:
        reports = [(key, r) for key, r in ledger.products.items() if r.layer == layer.name]
        expected[layer.name] = {
            "products": len(reports),
            "detected": sum(len(r.detected) for _, r in reports),
            "corrected": sum(len(r.corrected) for _, r in reports),
            "recomputations": sum(r.recomputed for _, r in reports),
            "recomputed": sum(
                len(c) for _, r in reports for a, c in r.detected_by_attempt.items() if a != r.accepted_attempt
            ),
            "rolled_back": sum(len(r.detected) for key, r in reports if key in ledger.rolled_back),
            "ops_rolled_back": sum(1 for name, _ in ledger.rolled_back if name == layer.name),
            "repaired": len(ledger.repairs.get(layer.name, [])),
        }
    got = {layer["name"]: {k: layer[k] for k in expected["dense0"]} for layer in run["layers"]}
    assert got == expected
    for name in ("detected", "recomputed", "rolled_back", "repaired", "recomputations"):
        assert sum(e[name] for e in expected.values()) > 0, f"the run exercised no {name}"
    # Workers: every count placed on a real worker, the sums agree with the layers', and the
    # detections land on the workers that own those blocks.
    workers = {w["worker"]: w for w in run["workers"]}
    assert set(workers) == set(client.nthreads())
    for name in COUNTS:
        assert sum(w[name] for w in workers.values()) == run["totals"][name]
    owners = {layer.name: layer.owners for layer in trainer.layers}
    by_owner = Counter(owners[r.layer][tuple(c)] for r in ledger.products.values() for c in r.detected)
    assert {w: workers[w]["detected"] for w in workers} == {w: by_owner.get(w, 0) for w in workers}
    shapes = {layer["name"]: layer["shape"] for layer in run["layers"]}
    assert shapes["dense1"]["grid"] == [2, 2] and shapes["dense1"]["parity"] == [2, 2]
    assert sum(w["blocks"] for w in workers.values()) == 2 * 16  # two 4x4 coded grids


# -- the page, live, in a real browser --------------------------------------------------------
PAGE_TEXT = """
function text(node) {
  let out = '';
  for (const c of node.childNodes) {
    if (c.nodeType === 3) out += c.textContent + ' ';
    else if (c.nodeType === 1 && c.tagName !== 'STYLE' && c.tagName !== 'SCRIPT') {
      if (c.shadowRoot) out += text(c.shadowRoot);
      out += text(c);
    }
  }
  return out;
}
return text(document.body).replace(/\\s+/g, ' ');
"""


def chromium_driver(window: str = "1400,1100"):
    """Selenium on Debian's chromium; skips with the reason when the browser is not installed."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (.ci/browser.sh installs them; it could not here)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="codenet-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={window}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver, profile


def wait_for(what: str, predicate, timeout: float, poll: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def counters(text: str) -> tuple[int, int] | None:
    """(step, blocks detected) from the page header, once it shows a running or finished run."""
    step = re.search(r"step (\d+) of \d+", text)
    detected = re.search(r"Blocks detected (\d+)", text)
    return (int(step.group(1)), int(detected.group(1))) if step and detected else None


def keep(shot: Path, name: str) -> None:
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(SCREENSHOT_DIR) / name)


#: Exponent flips in products and updates, NaN results: corrections, recomputations, a rollback, repairs.
FAULTS = (
    "bitflip:0.02:field=exponent:steps=block-forward+block-backward,bitflip:0.01:field=exponent:steps=update,"
    "nan:0.01:steps=block-forward+block-backward"
)


@pytest.mark.slow
def test_codenet_page_shows_live_counters_in_headless_chromium(tmp_path):
    """A real run (the CLI, on an existing scheduler given by --scheduler) with injected faults; the
    CodeNet page, opened during the run in headless Chromium, shows the counters moving; the
    --report file is written."""
    driver, profile = chromium_driver()
    report = tmp_path / "run-report.html"
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster) as client:
        base = base_url(client)
        train = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "codenet_dask",
                "train",
                "--scheduler",
                cluster.scheduler_address,
                "--dataset",
                "digits",
                "--layers",
                "16",
                "--epochs",
                "3",
                "--batch-size",
                "128",
                "--lr",
                "0.5",
                "--faults",
                FAULTS,
                "--checkpoint-every",
                "6",
                "--seed",
                "2",
                "--report",
                str(report),
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:

            def running_with_detections():
                try:
                    run = fetch_json(base)["run"]
                except OSError:  # the plugin (and its route) is not registered yet
                    return None
                return run if run and run["status"] == "running" and run["totals"]["detected"] > 0 else None

            run = wait_for("the run to publish its first detections", running_with_detections, 90)
            driver.get(f"{base}/{PAGE}")
            first_text = wait_for(
                "the page to render the counters",
                lambda: (t := driver.execute_script(PAGE_TEXT)) and counters(t) and t,
                30,
            )
            first = counters(first_text)
            assert f"CodeNet run {run['run']}" in first_text and "running" in first_text
            assert "dense0" in first_text and "dense1" in first_text and "2x2" in first_text  # code shapes
            assert "Codenet" in first_text  # the dashboard's navbar links the page
            driver.save_screenshot(str(tmp_path / "codenet-running.png"))
            if SCREENSHOT_DIR:  # the task stream of the same run, for the README
                status = driver.window_handles[0]
                driver.switch_to.new_window("tab")
                driver.get(f"{base}/status")
                time.sleep(4)
                driver.save_screenshot(str(tmp_path / "task-stream.png"))
                keep(tmp_path / "task-stream.png", "task-stream.png")
                driver.close()
                driver.switch_to.window(status)
            out, err = train.communicate(timeout=240)
            assert train.returncode == 0, err[-3000:]
            # The same page, never reloaded: its periodic refresh shows the finished run.
            last_text = wait_for(
                "the page to show the finished run",
                lambda: "finished" in (t := driver.execute_script(PAGE_TEXT)) and t,
                15,
            )
            last = counters(last_text)
            driver.save_screenshot(str(tmp_path / "codenet-finished.png"))
            keep(tmp_path / "codenet-finished.png", "codenet-page.png")
        finally:
            if train.poll() is None:
                train.kill()
            driver.quit()
            shutil.rmtree(profile, ignore_errors=True)
    summary = json.loads(out)
    assert last[0] > first[0] and last[1] > first[1], (first, last)
    assert last == (summary["iterations"], summary["faults"]["detected"])
    assert f"detected {summary['faults']['detected']}" in last_text and "undetected 0" in last_text
    for shot in ("codenet-running.png", "codenet-finished.png"):
        assert (tmp_path / shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.stat().st_size > 10_000 and "Dask Performance Report" in report.read_text()


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--report", "run.txt"], "--report must end in .html"),
        (["train", "--report", "/no/such/folder/run.html"], "folder /no/such/folder does not exist"),
        (["graph", "--out", "step.gif"], "--out must end in .png or .svg or .pdf or .dot"),
        (["graph", "--out", "step.png", "--grid", "3x2"], "--grid must be square"),
    ],
)
def test_bad_output_paths_exit_2_before_starting(args, message, capsys):
    from codenet_dask.cli import main

    assert main([*args, "--workers", "1"]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == "", captured.err


# -- one step's task graph --------------------------------------------------------------------
def test_one_steps_task_graph_is_recorded_and_drawn(client, tmp_path):
    graph = step_graph(client)
    prefixes = graph.prefixes()
    # Forward (both layers), backward (top layer), checks and updates, one task per worker each,
    # named by step and layer; nothing from before the step.
    for layer in ("dense-zero", "dense-one"):
        for step in ("block-forward", "summary-forward", "decode-forward", "verdicts-forward", "update"):
            assert prefixes[f"{step}-{layer}"] == 2, prefixes
    assert prefixes["block-backwards-dense-one"] == 2 and "block-backwards-dense-zero" not in prefixes
    assert not any(p.startswith(("encode", "scrub")) for p in prefixes), prefixes
    assert graph.inputs and all("shard" in k for k in graph.inputs)  # the resident coded shards
    dot = render(graph, tmp_path / "step.dot", detail="tasks")
    assert "cluster_update-dense-zero" in dot.read_text() and "cluster_block-forward-dense-one" in dot.read_text()
    if shutil.which("dot") is None:
        pytest.skip("graphviz's dot program is not installed (.ci/browser.sh installs it; it could not here)")
    png = render(graph, tmp_path / "step.png", title="one step")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
