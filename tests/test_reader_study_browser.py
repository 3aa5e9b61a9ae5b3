"""The reader study in a real Chromium (Debian's package, driven by Playwright): a reader
completes a study with the keyboard, a reload resumes, two readers at once, and the admin's
CSV export matches the database. Skips only where no Chromium is installed (.ci/run installs it)."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest

from dermsynth.reader_study import database as db
from dermsynth.reader_study.design import StudyConfig, create_study
from readers_helpers import Server, invite

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture()
def served(reader_store_split, tmp_path):
    store, split = reader_store_split
    res = create_study(store, split, tmp_path / "study", StudyConfig(n_items=6, n_pairs=1, image_size=64, seed=1,
                                                                                   allow_mixed_resolution=True))
    with Server(tmp_path / "study") as srv:
        yield srv, tmp_path / "study", res["admin_token"]


def expect(locator):
    """Playwright's locator assertions: they wait without evaluating a string in the page, which the
    pages' Content-Security-Policy (no 'unsafe-eval') forbids, as it would any injected script."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def n_answers(study, name=None):
    conn = db.connect(study / db.DB_NAME)
    try:
        sql = "SELECT COUNT(*) FROM answers a JOIN readers r USING (reader_id)"
        return conn.execute(sql + (" WHERE r.name = ?" if name else ""), (name,) if name else ()).fetchone()[0]
    finally:
        conn.close()


def answer_one(page, confidence: int = 3) -> None:
    """Answer the item on screen with the keyboard, as a reader would."""
    page.wait_for_selector("#confidence button")
    before = page.inner_text("#progress")
    question = page.inner_text("#question")
    page.keyboard.press("ArrowLeft" if "Which image" in question else "s")
    page.keyboard.press(str(confidence))
    expect(page.locator("#progress")).not_to_have_text(before)


def test_a_reader_completes_the_study_and_a_reload_resumes(served, browser):
    srv, study, _ = served
    token = invite(study, "dr_a")
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    page.goto(f"{srv.url}/r/{token}")
    assert page.inner_text("#progress") in ("1 of 7", "loading…")
    for _ in range(3):
        answer_one(page)
    assert n_answers(study) == 3
    page.reload()
    page.wait_for_selector("#confidence button")
    assert page.inner_text("#progress") == "4 of 7"  # resumes where the reader stopped
    while page.get_attribute("body", "data-finished") != "1":
        answer_one(page, 5)
    assert n_answers(study) == 7 and "Thank you" in page.inner_text("#question")
    assert page.evaluate("document.querySelector('.images img') === null")
    page.close()


def test_two_readers_at_once_and_clicks_work(served, browser):
    srv, study, _ = served
    pages = []
    for name in ("dr_b", "dr_c"):
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(f"{srv.url}/r/{invite(study, name)}")
        pages.append(page)
    for _ in range(7):
        for page in pages:  # interleaved
            page.wait_for_selector("#confidence button")
            choice = "#answer-left" if "Which image" in page.inner_text("#question") else "#answer-real"
            before = page.inner_text("#progress")
            page.click(choice)
            page.click("#confidence-2")
            expect(page.locator("#progress")).not_to_have_text(before)
    assert n_answers(study, "dr_b") == 7 and n_answers(study, "dr_c") == 7
    for page in pages:
        assert page.get_attribute("body", "data-finished") == "1"
        page.context.close()


def test_admin_export_matches_the_database(served, browser):
    srv, study, admin = served
    page = browser.new_page()
    page.goto(f"{srv.url}/r/{invite(study, 'dr_d')}")
    for _ in range(4):
        answer_one(page, 4)
    admin_page = browser.new_page(accept_downloads=True)
    admin_page.goto(f"{srv.url}/admin")
    admin_page.fill("#token", admin)
    admin_page.click("#login")
    expect(admin_page.locator("table")).to_contain_text("dr_d")
    assert admin not in admin_page.url and "4 / 7" in admin_page.inner_text("table")
    with admin_page.expect_download() as dl:
        admin_page.click("#export")
    rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text())))
    conn = db.connect(study / db.DB_NAME)
    truth = db.answers_with_key(conn)
    conn.close()
    assert len(rows) == len(truth) == 4
    assert {(r["reader"], r["item_id"], r["answer"], r["confidence"], r["truth"]) for r in rows} == \
        {(r["reader"], r["item_id"], r["answer"], str(r["confidence"]), r["truth"]) for r in truth}
    admin_page.click("#logout")
    expect(admin_page.locator("#token")).to_be_visible()  # logged out: the login form again
    forbidden = browser.new_page()
    resp = forbidden.goto(f"{srv.url}/admin/export.csv")
    assert resp.status == 403 and "Traceback" not in forbidden.content()
    for p in (page, admin_page, forbidden):
        p.close()


def test_a_failed_save_can_be_retried_and_a_stale_tab_is_told(served, browser):
    """Item 12: when the server is down the answer buttons come back with a retry message and the
    retry saves; item 11: a second tab's different answer to the same image is reported as not
    recorded."""
    srv, study, _ = served
    token = invite(study, "dr_e")
    page = browser.new_page()
    page.goto(f"{srv.url}/r/{token}")
    page.wait_for_selector("#confidence button")
    stale = browser.new_page()
    stale.goto(f"{srv.url}/r/{token}")  # the same item, in a second tab
    stale.wait_for_selector("#confidence button")
    single = "Which image" not in page.inner_text("#question")
    srv.kill()
    page.keyboard.press("s" if single else "ArrowLeft")
    page.keyboard.press("3")
    expect(page.locator("body")).to_have_attribute("data-save-failed", "1")
    assert "not recorded" in page.inner_text("#status") and "retry" in page.inner_text("#status")
    assert page.evaluate("[...document.querySelectorAll('#confidence button')].every(b => !b.disabled)")
    srv.start()
    before = page.inner_text("#progress")
    page.click("#confidence-3")  # the retry
    expect(page.locator("#progress")).not_to_have_text(before)
    assert n_answers(study, "dr_e") == 1
    stale.keyboard.press("r" if single else "ArrowRight")  # a different answer in the stale tab
    stale.keyboard.press("5")
    expect(stale.locator("#status")).to_contain_text("not recorded")
    assert n_answers(study, "dr_e") == 1
    for p in (page, stale):
        p.close()
