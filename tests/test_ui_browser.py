"""A real browser on the served web UI: headless Chromium (Debian's chromium and chromium-driver, driven
by selenium with no browser download) opens llama-server's UI from the llmtp-built UI test bed, sends a
message to the tiny `agree` model, sees the reply appear, and saves a screenshot as a test artifact
(test-artifacts/ui-chat.png, or LLMTP_TEST_ARTIFACTS). Skips with the reason where no Chromium is installed."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from llama_server import llama_server

pytestmark = [pytest.mark.llama, pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = "Hello from llmtp's browser test"


def _chromium() -> tuple[str, str]:
    """(browser, driver) paths, or a skip saying what to install."""
    browser = next((p for c in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(c))), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver") if os.access(p, os.X_OK)), None
    )
    if browser is None or driver is None:
        pytest.skip(
            "no headless Chromium installed: apt-get install chromium chromium-driver "
            f"(found browser={browser}, driver={driver}); see docs/testing.md"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is missing: pip install -e '.[test]'")
    return browser, driver


def _artifacts() -> Path:
    path = Path(os.environ.get("LLMTP_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _idle(base_url: str) -> bool:
    slots = httpx.get(base_url + "/slots", timeout=10).json()
    return not any(s.get("is_processing") for s in slots)


def test_browser_sends_a_message_and_sees_the_reply(llama_ui_bin_dir, tiny_models, tmp_path):
    browser, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,860",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--no-first-run",
    ):
        options.add_argument(arg)
    shot = _artifacts() / "ui-chat.png"
    # 96 tokens: the reply fills a few lines of the screenshot and the test stays short.
    with llama_server(llama_ui_bin_dir, tiny_models["agree"], tmp_path / "server.log", ["-n", "96"]) as s:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        try:
            driver.set_page_load_timeout(60)
            driver.get(s.base_url + "/")
            box = WebDriverWait(driver, 60).until(
                lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, "textarea") if e.is_enabled()), None)
            )
            box.send_keys(MESSAGE)
            box.send_keys(Keys.ENTER)

            def reply(d):
                msgs = d.find_elements(By.CSS_SELECTOR, ".chat-message-assistant")
                text = msgs[-1].text.strip() if msgs else ""
                return text or None

            WebDriverWait(driver, 90).until(reply)
            deadline = time.monotonic() + 90
            while not _idle(s.base_url) and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(1.0)  # the last streamed chunk and the message's statistics render
            text = reply(driver)
            page = driver.find_element(By.TAG_NAME, "body").text
            driver.save_screenshot(str(shot))
        finally:
            driver.quit()
        log = s.log()
    assert MESSAGE in page  # the user's message is shown
    assert text, "no assistant reply appeared"
    # The agree model is the bigram t -> succ(t), a cycle through the printable bytes
    # (docs/testing.md): its reply runs through the digits and the alphabet, which no UI text does.
    assert "0123456789" in text and "ABCDEFGHIJKLMNOPQRSTUVWXYZ" in text, text
    assert "stop processing: n_tokens" in log  # this llama-server ran the request
    assert shot.is_file() and shot.stat().st_size > 10_000
