"""The web app in a real browser: Debian's Chromium, headless, driven by Playwright for Python.

One app (``python -m vinf_jax.app`` with tiny-demo on a free loopback port) serves the file's
tests. The first types two prompts, sets a small video, clicks Generate and waits until the page's
video element has loaded a video with a duration; the mp4 and its sidecar are then in the base path
and a screenshot is kept (``$VINF_SCREENSHOTS`` or the test's folder). The second enters a bad size
and sees the config's error text, with nothing written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(url, base path) of a running app; stopped at the end of the file."""
    base = tmp_path_factory.mktemp("app") / "exp"
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")},
           "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(base.parent / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "vinf_jax.app", "--model", "tiny-demo", "--config",
                             str(ROOT / "configs/demo.json"), "--base-path", str(base), "--port", str(port),
                             "--max-frames", "64", "--max-pixels", str(64 * 64)],
                            cwd=base.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the app did not start: {(base.parent / 'app.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield url, base
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(browser, **kw):
    """A page whose waits allow for a loaded CI machine (the other test worker shares the 2 cores with
    the app and Chromium): a wait is for an event, not a speed check."""
    page = browser.new_page(**kw)
    page.set_default_timeout(180_000)
    return page


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input").first
    box.fill(str(value))
    box.press("Tab")  # Gradio takes a number's value when the field loses focus


def small_video(page) -> None:
    """4 clips x 4 frames, 4 steps (64x64 from the demo config)."""
    set_number(page, "num_clips", 4)
    set_number(page, "num_frames", 4)
    set_number(page, "steps", 4)


def video_loaded(page, timeout_ms: int) -> None:
    page.wait_for_function("() => { const v = document.querySelector('#video video');"
                           " return v !== null && v.readyState >= 1 && v.duration > 0; }", timeout=timeout_ms)
    page.wait_for_function("() => document.querySelector('#summary').innerText.includes('seams:')", timeout=180_000)


def test_generate_in_the_browser_plays_the_video_and_writes_mp4_and_sidecar(app, browser, tmp_path):
    url, base = app
    page = open_page(browser, viewport={"width": 1400, "height": 1300})
    page.goto(url)
    prompts = page.locator("#prompts textarea")
    prompts.fill("a green circle moving right\na yellow square moving up")
    prompts.press("Tab")
    small_video(page)
    page.wait_for_function("() => document.querySelector('#clip-map').innerText.includes('clips 2–3: a yellow square')")
    page.click("#generate")
    video_loaded(page, 300_000)
    duration = page.evaluate("() => document.querySelector('#video video').duration")
    assert duration == pytest.approx(16 / 16, abs=0.2)  # 4 clips x 4 frames at the config's 16 fps
    (mp4,) = base.glob("*.mp4")
    assert mp4.name == "0_16_4_16.mp4"
    side = json.loads(mp4.with_suffix(".json").read_text())
    assert side["config"]["pipe_configs"]["prompts"] == ["a green circle moving right", "a yellow square moving up"]
    assert side["resolved"]["num_clips"] == 4 and len(side["seams"]["seams"]) == 3
    assert mp4.with_suffix(".png").is_file()
    summary = page.locator("#summary").inner_text()
    assert mp4.name in summary and "compile cache" in summary and "frames/s" in summary
    shots = Path(os.environ.get("VINF_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "app.png"), full_page=True)
    assert (shots / "app.png").stat().st_size > 10_000
    page.close()


def test_a_bad_size_shows_the_config_error_and_writes_nothing(app, browser):
    url, base = app
    before = sorted(p.name for p in base.iterdir())
    page = open_page(browser)
    page.goto(url)
    set_number(page, "height", 60)
    page.click("#generate")
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('error:')", timeout=180_000)
    text = page.locator("#status").inner_text()
    assert "pipe_configs.height" in text and "multiple of 8" in text and "60" in text, text
    set_number(page, "height", 128)  # a multiple of 8 but over --max-pixels
    page.click("#generate")
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('--max-pixels')",
                           timeout=180_000)
    assert sorted(p.name for p in base.iterdir()) == before
    page.close()


def test_two_visitors_take_turns_and_the_second_run_compiles_nothing(app, browser):
    """Two pages click Generate together: one runs, the other shows its place in the queue, then
    both videos play. The shapes are the first test's, so the kept pipeline compiles nothing."""
    url, base = app
    pages = [open_page(browser) for _ in range(2)]
    for page in pages:
        page.goto(url)
        small_video(page)
    for page in pages:
        page.click("#generate")
    deadline, waiting = time.monotonic() + 180, False
    while not waiting and time.monotonic() < deadline:  # whichever click came second waits in line
        waiting = any(re.search(r"queue: *\d+/\d+", page.inner_text("body")) for page in pages)
        time.sleep(0.1)
    assert waiting, "no page showed its place in the queue"
    for page in pages:
        video_loaded(page, 300_000)
        assert "compile cache: 0 hit(s), 0 miss(es)" in page.locator("#summary").inner_text()
        page.close()
    assert len(list(base.glob("*.mp4"))) == 3  # the first test's and these two, under their own indices
