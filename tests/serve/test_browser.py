"""End to end in a real browser: Debian's chromium driven by Playwright against `zeroground serve`.

Searches, sees result cards, clicks the first, and checks the video element plays that video
from the moment's start. With ZEROGROUND_SCREENSHOT=path the page is saved there (how
docs/images/serve.png is made).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serve.test_app import free_port

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def served_cli(small_library):
    root, world = small_library
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "zeroground", "serve", "--library", str(root), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/api/videos", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.stdout.read().decode() if proc.poll() is not None else ""
            proc.kill()
            raise RuntimeError(f"zeroground serve did not come up: {out[-2000:]}")
        time.sleep(0.3)
    yield url, world
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _need_chromium() -> None:
    """CI (``.ci/run`` installs chromium first) must run the browser tests: there a missing
    browser is a failure; on a developer's machine without it, a skip that says how to get it."""
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} missing (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_search_click_plays_the_moment_in_chromium(served_cli):
    _need_chromium()
    from playwright.sync_api import sync_playwright

    url, world = served_cli
    query = "someone picks up the mug"
    expected = httpx.post(f"{url}/api/search", json={"query": query, "k": 10}).json()["results"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(f"{url}/ui/", wait_until="networkidle")
            page.locator("#zg-query textarea").fill(query)
            page.locator("#zg-search").click()
            page.wait_for_selector(".zg-hit", timeout=30_000)
            cards = page.locator(".zg-hit")
            assert cards.count() == len(expected)
            first = cards.first
            assert first.get_attribute("data-src") == f"/media/{expected[0]['video']}"
            start = float(first.get_attribute("data-start"))
            assert start == pytest.approx(expected[0]["start"], abs=1e-3)
            page.wait_for_function("() => [...document.querySelectorAll('.zg-hit img')].every(i => i.complete && i.naturalWidth > 0)",
                                   timeout=30_000)
            first.click()
            page.wait_for_function(
                "() => { const v = document.querySelector('video.zg-player');"
                " return v && v.readyState >= 2 && !v.seeking && v.currentSrc.includes('/media/'); }",
                timeout=30_000)
            state = page.evaluate("() => { const v = document.querySelector('video.zg-player');"
                                  " return {t: v.currentTime, src: v.currentSrc, d: v.duration}; }")
            assert state["src"].endswith(f"/media/{expected[0]['video']}")
            assert state["t"] == pytest.approx(start, abs=0.5), state
            shot = os.environ.get("ZEROGROUND_SCREENSHOT")
            if shot:
                page.evaluate("() => document.querySelector('video.zg-player').pause()")
                page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()


def test_one_video_tab_answers_several_queries_with_a_plot(served_cli):
    _need_chromium()
    from playwright.sync_api import sync_playwright

    url, world = served_cli
    vid = world.plans[1].video
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(f"{url}/ui/", wait_until="networkidle")
            page.get_by_role("tab", name="One video").click()
            page.locator("#zg-pick input").click()
            page.get_by_role("option", name=vid).click()
            for query in ("someone opens the door", "a man picks the mug up"):
                expected = httpx.post(f"{url}/api/ground", json={"video": vid, "query": query, "top_k": 5}).json()["spans"]
                page.locator("#zg-vquery textarea").fill(query)
                page.locator("#zg-ground").click()
                page.wait_for_function(
                    "(s) => { const c = [...document.querySelectorAll('.zg-hit')].filter(c => c.dataset.src.endsWith(s[0]));"
                    " return c.length === s[1] && Math.abs(parseFloat(c[0].dataset.start) - s[2]) < 1e-3; }",
                    arg=[f"/media/{vid}", len(expected), expected[0]["start"]], timeout=30_000)
            # the similarity plot (matplotlib, rendered as an image by gr.Plot)
            page.wait_for_function("() => document.querySelectorAll('.zg-hit').length > 0 && "
                                   "[...document.querySelectorAll('img')].some(i => i.src.startsWith('data:image'))",
                                   timeout=30_000)
        finally:
            browser.close()
