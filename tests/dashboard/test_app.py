"""The dashboard app in-process (httpx over ASGI) on both backends: pages, filters, auth,
CSRF, writes recorded as ``dashboard:operator``, no secrets shown, security headers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import pytest

from job import JobState
from job.dashboard import create_app
from tests.dashboard.conftest import TOKEN, World, connected, make_world, secrets_of

pytestmark = pytest.mark.anyio

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture
async def world(make_jobs: Any) -> World:
    return await make_world(make_jobs)


@pytest.fixture
async def client(world: World, job_database: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with connected(job_database) as admin:
        app = create_app(admin, token=TOKEN)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@pytest.fixture
async def readonly(world: World, job_database: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with connected(job_database) as admin:
        transport = httpx.ASGITransport(app=create_app(admin))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def csrf_of(client: httpx.AsyncClient, path: str = "/") -> str:
    page = await client.get(path)
    match = CSRF.search(page.text)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def log_in(client: httpx.AsyncClient) -> str:
    csrf = await csrf_of(client, "/login")
    r = await client.post("/login", data={"csrf": csrf, "token": TOKEN})
    assert r.status_code == 303
    return await csrf_of(client, "/")


def cell(html: str, state: str) -> int:
    m = re.search(rf'data-state="{state}"><a [^>]*>(\d+)</a>', html)
    assert m, f"no count for {state}"
    return int(m.group(1))


async def test_overview_shows_exact_counts(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert cell(r.text, "pending") == 2
    assert cell(r.text, "running") == 0
    assert cell(r.text, "completed") == 3
    assert cell(r.text, "errored") == 2
    assert cell(r.text, "cancelled") == 0
    assert "40.0%" in r.text  # failure rate 2 / 5
    assert "<svg" in r.text and 'id="throughput"' in r.text
    assert re.search(r'data-queue="reports"><td>reports</td><td class="pending">2<', r.text)
    fragment = await client.get("/fragments/overview")
    assert fragment.status_code == 200 and cell(fragment.text, "errored") == 2
    assert "<html" not in fragment.text


async def test_filter_jobs_by_state(client: httpx.AsyncClient, world: World) -> None:
    r = await client.get("/jobs", params={"state": "errored"})
    assert r.status_code == 200
    assert r.text.count('class="job-row"') == 2
    for job_id in world.errored:
        assert str(job_id) in r.text
    for job_id in world.completed + world.pending:
        assert str(job_id) not in r.text
    r = await client.get("/jobs", params={"queue": "reports"})
    assert r.text.count('class="job-row"') == 2
    r = await client.get("/jobs", params={"type": "send_mail", "state": "completed"})
    assert r.text.count('class="job-row"') == 3
    assert (await client.get("/jobs", params={"state": "bogus"})).status_code == 400
    fragment = await client.get("/fragments/jobs", params={"state": "pending"})
    assert fragment.text.count('class="job-row"') == 2


async def test_next_page_link_follows_the_cursor(
    client: httpx.AsyncClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("job.dashboard.app.PAGE_SIZE", 3)
    first = await client.get("/jobs")
    assert first.text.count('class="job-row"') == 3
    link = re.search(r'href="([^"]+)" id="next-page"', first.text)
    assert link
    seen = set(re.findall(r"/jobs/([0-9a-f-]{36})", first.text))
    url = link.group(1).replace("&amp;", "&")
    while url:
        page = await client.get(url)
        seen |= set(re.findall(r"/jobs/([0-9a-f-]{36})", page.text))
        nxt = re.search(r'href="([^"]+)" id="next-page"', page.text)
        url = nxt.group(1).replace("&amp;", "&") if nxt else ""
    assert len(seen) == 7
    assert (await client.get("/jobs", params={"cursor": "' OR 1=1 --"})).status_code == 400


async def test_job_detail_shows_config_error_and_history(
    client: httpx.AsyncClient, world: World
) -> None:
    r = await client.get(f"/jobs/{world.errored[0]}")
    assert r.status_code == 200
    assert '"note": "mail 1"' in r.text.replace("&#34;", '"')
    assert 'id="job-state">errored<' in r.text
    assert "bad input" in r.text
    assert 'data-event="execution_errored"' in r.text


async def test_bad_or_unknown_job_id_is_404(client: httpx.AsyncClient) -> None:
    for path in [f"/jobs/{uuid4()}", "/jobs/not-a-uuid", "/jobs/%27%20OR%201%3D1", "/nope"]:
        r = await client.get(path)
        assert r.status_code == 404, path
    csrf = await log_in(client)
    r = await client.post(f"/jobs/{uuid4()}/retry", data={"csrf": csrf})
    assert r.status_code == 404
    r = await client.post("/jobs/xyz/retry", data={"csrf": csrf})
    assert r.status_code == 404


async def test_unauthenticated_retry_is_403_and_changes_nothing(
    client: httpx.AsyncClient, world: World
) -> None:
    job_id = world.errored[0]
    csrf = await csrf_of(client, f"/jobs/{job_id}")
    r = await client.post(f"/jobs/{job_id}/retry", data={"csrf": csrf})
    assert r.status_code == 403
    r = await client.post(f"/jobs/{world.pending[0]}/cancel", data={"csrf": csrf})
    assert r.status_code == 403
    assert (await world.admin.get_job(job_id)).state is JobState.ERRORED
    assert (await world.admin.get_job(world.pending[0])).state is JobState.PENDING


async def test_readonly_dashboard_refuses_every_write(
    readonly: httpx.AsyncClient, world: World
) -> None:
    csrf = await csrf_of(readonly, "/queues")
    assert 'id="login-link"' not in (await readonly.get("/")).text
    r = await readonly.post("/login", data={"csrf": csrf, "token": ""})
    assert r.status_code == 403
    for path in [
        f"/jobs/{world.errored[0]}/retry",
        f"/jobs/{world.pending[0]}/cancel",
        f"/jobs/{world.completed[0]}/delete",
        "/queues/mail/pause",
    ]:
        r = await readonly.post(path, data={"csrf": csrf}, headers={"Authorization": "Bearer x"})
        assert r.status_code == 403, path
    assert (await world.admin.get_job(world.errored[0])).state is JobState.ERRORED
    assert (await world.admin.get_job(world.completed[0])).state is JobState.COMPLETED
    assert not any(q.paused for q in await world.admin.list_queues())


async def test_token_without_or_with_wrong_csrf_is_403(
    client: httpx.AsyncClient, world: World
) -> None:
    job_id = world.errored[0]
    good = await log_in(client)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for data in [{}, {"csrf": ""}, {"csrf": "0" * 64}, {"csrf": good[:-1] + "x"}]:
        r = await client.post(f"/jobs/{job_id}/retry", data=data)
        assert r.status_code == 403, data
        r = await client.post(f"/jobs/{job_id}/retry", data=data, headers=bearer)
        assert r.status_code == 403, data
    # A CSRF token of another session is refused too.
    async with httpx.AsyncClient(transport=client._transport, base_url="http://testserver") as c2:
        other = await csrf_of(c2, "/queues")
    r = await client.post(f"/jobs/{job_id}/retry", data={"csrf": other}, headers=bearer)
    assert r.status_code == 403
    assert (await world.admin.get_job(job_id)).state is JobState.ERRORED


async def test_wrong_token_cannot_log_in(client: httpx.AsyncClient, world: World) -> None:
    csrf = await csrf_of(client, "/login")
    r = await client.post("/login", data={"csrf": csrf, "token": TOKEN + "x"})
    assert r.status_code == 403
    assert "job_auth" not in client.cookies
    r = await client.post(f"/jobs/{world.errored[0]}/retry", data={"csrf": csrf})
    assert r.status_code == 403
    bad = {"Authorization": "Bearer nope"}
    r = await client.post(f"/jobs/{world.errored[0]}/retry", data={"csrf": csrf}, headers=bad)
    assert r.status_code == 403


async def test_login_cookie_is_httponly_samesite_strict_hmac(client: httpx.AsyncClient) -> None:
    csrf = await csrf_of(client, "/login")
    r = await client.post("/login", data={"csrf": csrf, "token": TOKEN})
    header = [v for k, v in r.headers.multi_items() if k == "set-cookie"]
    auth = next(h for h in header if h.startswith("job_auth="))
    assert "HttpOnly" in auth and "SameSite=strict" in auth.replace("Strict", "strict")
    assert TOKEN not in auth


async def test_authenticated_retry_and_cancel_change_the_job(
    client: httpx.AsyncClient, world: World
) -> None:
    csrf = await log_in(client)
    errored, pending = world.errored[0], world.pending[0]
    r = await client.post(f"/jobs/{errored}/retry", data={"csrf": csrf})
    assert r.status_code == 303
    job = await world.admin.get_job(errored)
    requeued = [e for e in job.events if e.type == "requeued"]
    assert requeued and requeued[-1].data["by"] == "dashboard:operator"
    r = await client.post(f"/jobs/{pending}/cancel", data={"csrf": csrf})
    assert r.status_code == 303
    job = await world.admin.get_job(pending)
    assert job.state is JobState.CANCELLED
    asked = [e for e in job.events if e.type == "cancel_requested"]
    assert asked and asked[-1].data["by"] == "dashboard:operator"
    # A retry of a live job is refused (409), a delete of an ended one works.
    r = await client.post(f"/jobs/{world.pending[1]}/retry", data={"csrf": csrf})
    assert r.status_code == 409
    r = await client.post(f"/jobs/{world.completed[0]}/delete", data={"csrf": csrf})
    assert r.status_code == 303
    assert (await client.get(f"/jobs/{world.completed[0]}")).status_code == 404


async def test_bearer_token_allows_writes_with_csrf(
    client: httpx.AsyncClient, world: World
) -> None:
    csrf = await csrf_of(client, "/queues")
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    r = await client.post(f"/jobs/{world.pending[0]}/cancel", data={"csrf": csrf}, headers=bearer)
    assert r.status_code == 303
    assert (await world.admin.get_job(world.pending[0])).state is JobState.CANCELLED


async def test_pause_and_resume_a_queue(client: httpx.AsyncClient, world: World) -> None:
    csrf = await log_in(client)
    assert (await client.post("/queues/mail/pause", data={"csrf": csrf})).status_code == 303
    assert {q.name: q.paused for q in await world.admin.list_queues()}["mail"] is True
    assert "Resume" in (await client.get("/queues")).text
    assert (await client.post("/queues/mail/resume", data={"csrf": csrf})).status_code == 303
    assert {q.name: q.paused for q in await world.admin.list_queues()}["mail"] is False
    assert (await client.post("/queues/nope/pause", data={"csrf": csrf})).status_code == 404
    scale = "/queues/mail/scale"
    assert (await client.post(scale, data={"csrf": csrf, "limit": "3"})).status_code == 303
    assert {q.name: q.limit for q in await world.admin.list_queues()}["mail"] == 3
    for bad in ["0", "-1", "2.5", "x", "9" * 12]:
        r = await client.post(scale, data={"csrf": csrf, "limit": bad})
        assert r.status_code == 400, bad
    assert {q.name: q.limit for q in await world.admin.list_queues()}["mail"] == 3
    assert (await client.post(scale, data={"csrf": csrf, "limit": ""})).status_code == 303
    assert {q.name: q.limit for q in await world.admin.list_queues()}["mail"] is None


async def test_no_page_shows_the_dsn_password_or_token(
    client: httpx.AsyncClient, world: World, job_database: Any
) -> None:
    await log_in(client)
    paths = [
        "/",
        "/fragments/overview",
        "/jobs",
        "/fragments/jobs",
        "/queues",
        "/schedules",
        "/workers",
        "/login",
        f"/jobs/{world.errored[0]}",
        f"/jobs/{uuid4()}",
        "/nope",
        "/jobs?state=bogus",
        "/static/live.js",
    ]
    for path in paths:
        r = await client.get(path)
        body = r.text + " ".join(f"{k}: {v}" for k, v in r.headers.items())
        for secret in secrets_of(job_database):
            assert secret not in body, (path, "leaks a secret")


async def test_sql_injection_search_is_harmless(client: httpx.AsyncClient, world: World) -> None:
    evil = "'; DROP TABLE jobs; --"
    r = await client.get("/jobs", params={"search": evil})
    assert r.status_code == 200
    assert 'id="no-jobs"' in r.text
    assert "&#39;; DROP TABLE jobs; --" in r.text  # echoed escaped in the search box
    assert sum((await world.admin.count_jobs()).values()) == 7
    r = await client.get("/jobs", params={"search": "<script>alert(1)</script>"})
    assert "<script>alert" not in r.text


async def test_security_headers_on_every_response(client: httpx.AsyncClient) -> None:
    for path in ["/", "/jobs", "/nope", "/static/live.js", f"/jobs/{uuid4()}"]:
        r = await client.get(path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
    page = (await client.get("/")).text
    assert "<script>" not in page and "onclick" not in page  # no inline script


async def test_schedules_and_workers_pages(client: httpx.AsyncClient, world: World) -> None:
    r = await client.get("/workers")
    assert r.status_code == 200 and "mail (send_mail)" in r.text
    r = await client.get("/schedules")
    assert r.status_code == 200 and 'id="schedules"' in r.text


async def test_an_auth_hook_names_the_operator_and_basic_auth_checks_passwords(
    world: World, job_database: Any
) -> None:
    """``auth=`` replaces the token: whoever the hook names may write (recorded as
    ``dashboard:<name>``), anyone it refuses gets 403 and nothing changes."""
    from job.dashboard import basic_auth

    async with connected(job_database) as admin:
        app = create_app(admin, auth=basic_auth({"alice": "wonder-land"}))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            csrf = await csrf_of(c, "/queues")
            target = world.errored[0]
            for bad in [("alice", "wrong"), ("bob", "wonder-land"), ("", "")]:
                r = await c.post(f"/jobs/{target}/retry", data={"csrf": csrf}, auth=bad)
                assert r.status_code == 403, bad
            garbled = {"Authorization": "Basic %%%"}
            r = await c.post(f"/jobs/{target}/retry", data={"csrf": csrf}, headers=garbled)
            assert r.status_code == 403
            assert (await world.admin.get_job(target)).state is JobState.ERRORED
            # The right password, but no CSRF field: still refused.
            r = await c.post(f"/jobs/{target}/retry", data={}, auth=("alice", "wonder-land"))
            assert r.status_code == 403
            r = await c.post(
                f"/jobs/{target}/retry", data={"csrf": csrf}, auth=("alice", "wonder-land")
            )
            assert r.status_code == 303
    job = await world.admin.get_job(target)
    requeued = [e for e in job.events if e.type == "requeued"]
    assert [e.data["by"] for e in requeued] == ["dashboard:alice"]
