"""The dashboard in a real browser (headless Chromium through Playwright) against uvicorn on
a free port, on both backends: counts, live update, filters, login, retry / cancel from the
UI, and a refused unauthenticated retry. Screenshots go to test-artifacts/screenshots/.

Chromium is never downloaded: ``$JOB_TEST_CHROMIUM`` or ``/usr/bin/chromium``; without one
these tests fail (they are not skipped).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright, expect

from job import JobState
from job.dashboard.app import _app_for_database
from tests.dashboard.conftest import TOKEN, World, connect_kwargs, make_world

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"
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


def chromium_path() -> str:
    path = os.environ.get("JOB_TEST_CHROMIUM", "/usr/bin/chromium")
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        pytest.fail(
            f"the browser tests need Chromium at {path!r} (set $JOB_TEST_CHROMIUM); "
            "Playwright must not download one"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def world(make_jobs: Any) -> World:
    return await make_world(make_jobs)


@pytest.fixture
def server(world: World, job_database: Any) -> Iterator[str]:
    """uvicorn serving the dashboard (its own Admin.connect, token set) in a thread."""
    kw = connect_kwargs(job_database)
    app = _app_for_database(dsn=kw.get("dsn"), sqlite_path=kw.get("sqlite_path"), token=TOKEN)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the dashboard server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    path = chromium_path()
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1100, "height": 720})
    p = await context.new_page()
    yield p
    await context.close()


def shot(name: str, job_database: Any) -> str:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return str(SHOTS / f"{name}-{job_database.name}.png")


async def count_cell(page: Page, state: str) -> Any:
    return page.locator(f'#state-counts td[data-state="{state}"]')


async def test_overview_shows_counts_and_updates_live(
    page: Page, server: str, world: World, job_database: Any
) -> None:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(server + "/")
    await expect(await count_cell(page, "pending")).to_have_text("2")
    await expect(await count_cell(page, "completed")).to_have_text("3")
    await expect(await count_cell(page, "errored")).to_have_text("2")
    await expect(await count_cell(page, "cancelled")).to_have_text("0")
    await expect(page.locator("#failure-rate")).to_have_text("40.0%")
    await expect(page.locator("#throughput rect.completed")).to_have_count(24)
    await page.screenshot(path=shot("overview", job_database), full_page=True)
    if job_database.name == "postgres":
        (ROOT / "docs" / "images").mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ROOT / "docs" / "images" / "dashboard.png"))
    # live.js swaps the counts in place: no reload (the marker survives).
    await page.evaluate("window.__marker = 42")
    await world.admin.cancel(world.pending[0], by="test")
    await expect(await count_cell(page, "cancelled")).to_have_text("1", timeout=10_000)
    await expect(await count_cell(page, "pending")).to_have_text("1")
    assert await page.evaluate("window.__marker") == 42
    assert not [e for e in errors if "Content Security Policy" in e], errors


async def test_filter_job_list_by_state(
    page: Page, server: str, world: World, job_database: Any
) -> None:
    await page.goto(server + "/jobs")
    await expect(page.locator("tr.job-row")).to_have_count(7)
    await page.select_option("#filter-state", "errored")
    await page.click("#apply-filters")
    await expect(page.locator("tr.job-row")).to_have_count(2)
    await expect(page.locator('tr.job-row[data-state="errored"]')).to_have_count(2)
    for job_id in world.errored:
        await expect(page.locator(f"text={job_id}")).to_have_count(1)
    await page.screenshot(path=shot("jobs-errored", job_database), full_page=True)
    await page.select_option("#filter-state", "pending")
    await page.click("#apply-filters")
    await expect(page.locator('tr.job-row[data-state="pending"]')).to_have_count(2)
    await expect(page.locator("tr.job-row")).to_have_count(2)


async def test_login_then_retry_and_cancel_from_the_ui(
    page: Page, server: str, world: World, job_database: Any
) -> None:
    await page.goto(server + "/")
    await page.click("#login-link")
    await page.fill("#token", TOKEN)
    await page.click("#login-button")
    await expect(page.locator("#logout")).to_be_visible()
    errored, pending = world.errored[0], world.pending[0]
    await page.goto(f"{server}/jobs/{errored}")
    await expect(page.locator("#job-state")).to_have_text("errored")
    await page.click("#retry-button")
    await expect(page.locator('#history li[data-event="requeued"]')).to_have_count(1)
    await page.screenshot(path=shot("job-retried", job_database), full_page=True)
    job = await world.admin.get_job(errored)
    requeued = [e for e in job.events if e.type == "requeued"]
    assert requeued and requeued[-1].data["by"] == "dashboard:operator"
    await page.goto(f"{server}/jobs/{pending}")
    await expect(page.locator("#job-state")).to_have_text("pending")
    await page.click("#cancel-button")
    await expect(page.locator("#job-state")).to_have_text("cancelled")
    await page.screenshot(path=shot("job-cancelled", job_database), full_page=True)
    job = await world.admin.get_job(pending)
    assert job.state is JobState.CANCELLED
    assert [e.data["by"] for e in job.events if e.type == "cancel_requested"] == [
        "dashboard:operator"
    ]


async def test_unauthenticated_retry_is_refused(
    page: Page, server: str, world: World, job_database: Any
) -> None:
    errored = world.errored[1]
    await page.goto(f"{server}/jobs/{errored}")
    async with page.expect_response(lambda r: r.request.method == "POST") as info:
        await page.click("#retry-button")
    assert (await info.value).status == 403
    await expect(page.locator("#error-message")).to_contain_text("Log in")
    await page.screenshot(path=shot("retry-refused", job_database), full_page=True)
    job = await world.admin.get_job(errored)
    assert job.state is JobState.ERRORED
    assert not [e for e in job.events if e.type == "requeued"]
