"""A clinician's round trip through /ui in a real browser (Debian's chromium driven by Playwright).

The real service runs under `bentoml serve` (conftest.py); the browser enters the API key, picks a
bundled sample patient, asks a question, watches the answer stream in with its guardrail
findings, accepts it, and the test finds that feedback row in the service's database.
Screenshots of each step go to $BALANCEDBIO_SCREENSHOT_DIR (default: the test's tmp dir);
docs/ui.png is one of them.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from system_programs import require

# The flags this workplace's closed network needs (see .ci/run): no background connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ANSWER_TIMEOUT_MS = 600_000  # a consult generates on a CPU shared with the rest of the suite
STEP_TIMEOUT_MS = 60_000
# Identifiers in the question make the input guardrail report `phi_in_text` whatever the model
# says, so at least one finding card is certain; the service redacts them before the model sees them.
QUESTION = "MRN 12345678, call back 555-123-4567: is ibuprofen safe for this patient given the current medications?"


@pytest.fixture(scope="module")
def browser():
    chromium = require("chromium")  # BALANCEDBIO_CHROMIUM, else chromium on PATH
    from playwright.sync_api import sync_playwright

    from playwright.sync_api import expect

    expect.set_options(timeout=STEP_TIMEOUT_MS)  # its default, 5 s, is short for a shared CPU
    with sync_playwright() as p:
        # Playwright starts the browser with a new, empty profile directory of its own.
        browser = p.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def shots(tmp_path):
    folder = Path(os.environ.get("BALANCEDBIO_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def feedback_row(db_path: Path, feedback_id: str):
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT outcome, consult_id FROM feedback WHERE id = ?", (feedback_id,)).fetchone()


def test_ui_is_served_at_ui(service):
    import httpx

    response = httpx.get(service.url + "/ui/", timeout=60, follow_redirects=True)
    assert response.status_code == 200, response.text[:500]
    assert "BalancedBio clinician" in response.text  # our app's title, not just any Gradio page
    config = httpx.get(service.url + "/ui/config", timeout=60).json()
    elem_ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert config["title"] == "BalancedBio clinician"
    assert {"api-key", "connect", "bb-status", "banner", "question", "ask", "answer", "accept"} <= elem_ids


def test_clinician_round_trip(service, browser, shots):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.goto(service.url + "/ui/")

    # The key is asked for before anything else works; the banner then shows the served model.
    page.locator("#api-key input").fill(service.api_key)
    page.locator("#connect").click()
    expect(page.locator("#bb-status")).to_contain_text("Connected")
    expect(page.locator("#banner")).to_contain_text(re.compile(r"aligned: (true|false)"))
    page.screenshot(path=str(shots / "1_connected.png"))

    # A bundled sample patient: its de-identified summary appears.
    samples = page.locator("#sample-patient label")
    expect(samples.first).to_be_visible()
    with_allergies = samples.filter(has_text="allergies")  # the richer record, when bundled
    (with_allergies.first if with_allergies.count() else samples.first).click()
    page.locator("#load-sample").click()
    expect(page.locator("#patient-summary")).to_contain_text("Patient summary (de-identified)")

    # Ask: the answer streams in, then the findings come as cards.
    page.locator("#question textarea").fill(QUESTION)
    page.locator("#ask").click()
    status = page.locator("#bb-status")
    expect(status).to_contain_text("Answered", timeout=ANSWER_TIMEOUT_MS)
    assert page.locator("#answer").inner_text().strip(), "no answer text was shown"
    cards = page.locator("#findings .bb-card")
    expect(cards.first).to_be_visible()
    expect(page.locator('#findings .bb-card[data-kind="phi_in_text"]')).to_have_count(1)
    page.screenshot(path=str(shots / "2_answered.png"), full_page=True)

    # Accept: the feedback is saved, shown in the session history, and is in the database.
    page.locator("#accept").click()
    expect(status).to_contain_text("Feedback 'accept' saved")
    feedback_id = re.search(r"\(id ([^)]+)\)", status.inner_text()).group(1)
    expect(page.locator("#history")).to_contain_text("accept")
    page.screenshot(path=str(shots / "3_accepted.png"), full_page=True)

    row = feedback_row(service.db_path, feedback_id)
    assert row is not None, f"feedback {feedback_id} is not in {service.db_path}"
    assert row[0] == "accept" and row[1]
    if os.environ.get("BALANCEDBIO_UPDATE_DOCS_SCREENSHOT"):
        shutil.copyfile(shots / "3_accepted.png", Path(__file__).resolve().parents[2] / "docs" / "ui.png")


def test_a_wrong_key_is_refused_in_the_ui(service, browser):
    from playwright.sync_api import expect

    page = browser.new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.goto(service.url + "/ui/")
    page.locator("#api-key input").fill("not-a-key")
    page.locator("#connect").click()
    expect(page.locator("#bb-status")).to_contain_text(re.compile(r"40[13] "))  # unknown (401) or refused (403)
    expect(page.locator("#banner")).to_contain_text("Not connected")


UPLOAD_BUNDLE = "fhir/synthea/Kermit_Trantow_f1a650a5-737e-4fd7-828e-03c3348b9524.json"  # 0.4 MB, under the body limit


def is_upload(response) -> bool:
    """Gradio's upload request (the browser adds ?upload_id=... to follow its progress)."""
    from urllib.parse import urlparse

    return urlparse(response.url).path.endswith("/gradio_api/upload") and response.request.method == "POST"


def test_an_upload_is_refused_until_the_key_is_accepted_then_loaded(service, browser, shots, shared_file):
    """Gradio's upload route sees no API key: the service ties it to the browser's session cookie,
    which the Connect button binds once the service accepts the key (ui/sessions.py)."""
    from playwright.sync_api import expect

    bundle = shared_file(UPLOAD_BUNDLE)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.goto(service.url + "/ui/")
    page.get_by_role("tab", name="Upload Bundle").click()
    summary = page.locator("#patient-summary")

    # Not connected: the gate refuses the upload with its message; no patient is loaded.
    with page.expect_response(is_upload) as refused:
        page.locator("#upload input[type=file]").set_input_files(str(bundle))
    assert refused.value.status == 401 and "press Connect" in refused.value.text()
    expect(summary).to_contain_text("No patient loaded")
    page.screenshot(path=str(shots / "upload_refused.png"), full_page=True)

    # Connected: the same browser session may upload, and the function loads its own file.
    page.reload()
    page.locator("#api-key input").fill(service.api_key)
    page.locator("#connect").click()
    expect(page.locator("#bb-status")).to_contain_text("Connected")
    page.get_by_role("tab", name="Upload Bundle").click()
    with page.expect_response(is_upload) as accepted:
        page.locator("#upload input[type=file]").set_input_files(str(bundle))
    assert accepted.value.status == 200, accepted.value.text()
    expect(summary).to_contain_text("Patient summary (de-identified)")
    expect(page.locator("#bb-status")).to_contain_text("Patient loaded from the uploaded file")
    assert "Kermit" not in summary.inner_text()  # the de-identified summary, never the raw Bundle
    page.screenshot(path=str(shots / "upload_loaded.png"), full_page=True)
