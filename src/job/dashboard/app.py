"""The dashboard's routes, auth, CSRF and security headers (see the package docstring)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from job.admin import Admin, JobFilter
from job.entity import JobState
from job.errors import ConfigError, JobNotFoundError, JobStateError
from job.limits import check_label

__all__ = ["create_app", "serve"]

#: Who the dashboard's writes are recorded as in a job's history.
SID_COOKIE = "job_sid"
AUTH_COOKIE = "job_auth"
PAGE_SIZE = 50

_HERE = Path(__file__).parent
_SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
]


class _SecurityHeaders:
    """Adds the security headers to every response (pages, fragments, static files, errors)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _SECURITY_HEADERS if k not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, wrapped)


def _mac(secret: bytes, purpose: str, value: str) -> str:
    return hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


#: Decides who may write: the operator's name for this request, or None (read-only for it).
#: Synchronous: it reads what the request carries (a header your proxy set, ``request.user``
#: from your own authentication middleware, Basic credentials).
AuthHook = Callable[[Request], "str | None"]


def basic_auth(users: dict[str, str]) -> AuthHook:
    """An :data:`AuthHook` accepting HTTP Basic credentials of ``users`` (name -> password,
    compared in constant time); the operator is the user name."""
    known = {name: password.encode() for name, password in users.items()}

    def check(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            decoded = base64.b64decode(header[len("Basic ") :], validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        name, sep, password = decoded.partition(":")
        expected = known.get(name)
        if not sep or expected is None:
            hmac.compare_digest(password.encode(), b"x" * 16)  # the same work for anyone
            return None
        return name if hmac.compare_digest(password.encode(), expected) else None

    return check


class _Dashboard:
    def __init__(
        self,
        get_admin: Callable[[], Admin],
        token: str | None,
        title: str,
        auth: AuthHook | None = None,
    ) -> None:
        self._get_admin = get_admin
        self._auth = auth
        self._token = token or None
        self._title = title
        self._secret = secrets.token_bytes(32)
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    @property
    def admin(self) -> Admin:
        return self._get_admin()

    # -- auth and CSRF -----------------------------------------------------------------------

    def _sid(self, request: Request) -> str:
        sid = request.cookies.get(SID_COOKIE, "")
        if not sid:
            sid = request.scope.setdefault("job.new_sid", secrets.token_urlsafe(24))
        return sid

    def csrf_token(self, request: Request) -> str:
        return _mac(self._secret, "csrf", self._sid(request))

    def _auth_value(self) -> str:
        assert self._token is not None
        return _mac(self._secret, "auth", self._token)

    @property
    def writable(self) -> bool:
        return self._token is not None or self._auth is not None

    def operator(self, request: Request) -> str | None:
        """Who writes with this request (None: nobody may): the auth hook's answer, else
        "operator" for the token."""
        if self._auth is not None:
            name = self._auth(request)
            if isinstance(name, str) and name:
                return check_label(name, "operator")[:64]
        if self._token_ok(request):
            return "operator"
        return None

    def by(self, request: Request) -> str:
        """The ``by`` recorded in a job's history for this request's write."""
        return f"dashboard:{self.operator(request)}"

    def authenticated(self, request: Request) -> bool:
        return self.operator(request) is not None

    def _token_ok(self, request: Request) -> bool:
        if self._token is None:
            return False
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            given = header[len("Bearer ") :].encode()
            return hmac.compare_digest(given, self._token.encode())
        cookie = request.cookies.get(AUTH_COOKIE, "")
        return hmac.compare_digest(cookie.encode(), self._auth_value().encode())

    async def _check_post(self, request: Request, *, need_auth: bool = True) -> Response | None:
        """None if the POST may go on; else the 403 to send (nothing is changed)."""
        form = await request.form()
        given = form.get("csrf")
        sid = request.cookies.get(SID_COOKIE, "")
        expected = _mac(self._secret, "csrf", sid)
        if (
            not sid
            or not isinstance(given, str)
            or not hmac.compare_digest(given.encode(), expected.encode())
        ):
            return self._error(request, 403, "Missing or bad CSRF token: nothing was changed.")
        if need_auth and not self.authenticated(request):
            why = (
                "This dashboard is read-only (no token or auth hook is configured)."
                if not self.writable
                else "Log in (or authenticate) to change anything."
            )
            return self._error(request, 403, why)
        return None

    # -- rendering ---------------------------------------------------------------------------

    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
        template = self._env.get_template(name)
        html = template.render(
            request=request,
            title=self._title,
            url_for=request.url_for,
            csrf=self.csrf_token(request),
            authed=self.authenticated(request),
            writable=self.writable,
            **ctx,
        )
        response = HTMLResponse(html, status_code=status)
        new_sid = request.scope.get("job.new_sid")
        if new_sid:
            response.set_cookie(SID_COOKIE, new_sid, httponly=True, samesite="strict", path="/")
        return response

    def _error(self, request: Request, status: int, message: str) -> Response:
        return self.render(
            request, "error.html", status=status, status_code=status, message=message
        )

    # -- pages -------------------------------------------------------------------------------

    async def _overview_ctx(self) -> dict[str, Any]:
        admin = self.admin
        counts = await admin.count_jobs()
        stats = await admin.stats()
        queues = await admin.list_queues()
        peak = max([b.completed + b.errored + b.cancelled for b in stats.throughput] + [1])
        return {
            "counts": counts,
            "states": list(JobState),
            "stats": stats,
            "queues": queues,
            "peak": peak,
            "failure_rate": stats.failure_rate,
        }

    async def overview(self, request: Request) -> Response:
        return self.render(request, "overview.html", **await self._overview_ctx())

    async def overview_fragment(self, request: Request) -> Response:
        return self.render(request, "_counts.html", **await self._overview_ctx())

    async def _jobs_ctx(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        state_text = q.get("state") or None
        state = None
        if state_text is not None:
            try:
                state = JobState(state_text)
            except ValueError:
                raise ConfigError(f"unknown state {state_text[:40]!r}") from None
        flt = JobFilter(
            state=state,
            job_type=q.get("type") or None,
            queue=q.get("queue") or None,
            search=q.get("search") or None,
        )
        page = await self.admin.list_jobs(flt, limit=PAGE_SIZE, cursor=q.get("cursor") or None)
        params = {
            k: v
            for k, v in {
                "state": state_text,
                "type": flt.job_type,
                "queue": flt.queue,
                "search": flt.search,
            }.items()
            if v
        }
        next_url = None
        if page.next_cursor:
            next_url = str(
                request.url_for("jobs").include_query_params(**params, cursor=page.next_cursor)
            )
        fragment = str(request.url_for("jobs_fragment").include_query_params(**params))
        if q.get("cursor"):
            fragment = str(
                request.url_for("jobs_fragment").include_query_params(**params, cursor=q["cursor"])
            )
        return {
            "page": page,
            "filters": params,
            "states": list(JobState),
            "next_url": next_url,
            "fragment_url": fragment,
        }

    async def jobs(self, request: Request) -> Response:
        try:
            ctx = await self._jobs_ctx(request)
        except ConfigError as exc:
            return self._error(request, 400, str(exc))
        return self.render(request, "jobs.html", **ctx)

    async def jobs_fragment(self, request: Request) -> Response:
        try:
            ctx = await self._jobs_ctx(request)
        except ConfigError as exc:
            return self._error(request, 400, str(exc))
        return self.render(request, "_jobs_table.html", **ctx)

    def _job_id(self, request: Request) -> UUID | None:
        try:
            return UUID(str(request.path_params["job_id"]))
        except ValueError:
            return None

    async def job(self, request: Request) -> Response:
        job_id = self._job_id(request)
        if job_id is None:
            return self._error(request, 404, "No such job.")
        try:
            job = await self.admin.get_job(job_id)
        except JobNotFoundError:
            return self._error(request, 404, "No such job.")
        config = job.config
        if hasattr(config, "model_dump"):
            config = config.model_dump(mode="json")
        return self.render(
            request,
            "job.html",
            job=job,
            queue=await self.admin.queue_of(job.job_type),
            config_json=json.dumps(config, indent=2, default=str, sort_keys=True),
            result_json=(
                None
                if job.result is None
                else json.dumps(job.result, indent=2, default=str, sort_keys=True)
            ),
            events=[(e, json.dumps(e.data, default=str, sort_keys=True)) for e in job.events],
        )

    async def job_action(self, request: Request) -> Response:
        refused = await self._check_post(request)
        if refused is not None:
            return refused
        job_id = self._job_id(request)
        if job_id is None:
            return self._error(request, 404, "No such job.")
        action = request.path_params["action"]
        try:
            if action == "retry":
                await self.admin.retry(job_id, by=self.by(request))
            elif action == "cancel":
                await self.admin.cancel(
                    job_id, by=self.by(request), reason="cancelled from the dashboard"
                )
            elif action == "delete":
                await self.admin.delete(job_id, by=self.by(request))
                return RedirectResponse(str(request.url_for("jobs")), status_code=303)
            else:
                return self._error(request, 404, "No such action.")
        except JobNotFoundError:
            return self._error(request, 404, "No such job.")
        except JobStateError as exc:
            return self._error(request, 409, str(exc))
        return RedirectResponse(str(request.url_for("job", job_id=str(job_id))), status_code=303)

    async def queues(self, request: Request) -> Response:
        return self.render(request, "queues.html", queues=await self.admin.list_queues())

    async def queue_action(self, request: Request) -> Response:
        refused = await self._check_post(request)
        if refused is not None:
            return refused
        name = request.path_params["name"]
        known = {q.name for q in await self.admin.list_queues()}
        if name not in known:
            return self._error(request, 404, "No such queue.")
        try:
            if request.path_params["action"] == "pause":
                await self.admin.pause_queue(name, by=self.by(request))
            elif request.path_params["action"] == "resume":
                await self.admin.resume_queue(name, by=self.by(request))
            elif request.path_params["action"] == "scale":
                limit = await self._limit_field(request)
                await self.admin.scale_queue(name, limit, by=self.by(request))
            else:
                return self._error(request, 404, "No such action.")
        except ConfigError as exc:
            return self._error(request, 400, str(exc))
        return RedirectResponse(str(request.url_for("queues")), status_code=303)

    async def _limit_field(self, request: Request) -> int | None:
        """The scale form's ``limit``: an int >= 1, or empty for "each worker's own"."""
        raw = (await request.form()).get("limit")
        text = raw.strip() if isinstance(raw, str) else ""
        if not text:
            return None
        if not text.isdigit() or len(text) > 9:
            raise ConfigError(f"a queue limit must be a whole number >= 1, got {text[:20]!r}")
        return int(text)

    async def schedules(self, request: Request) -> Response:
        return self.render(request, "schedules.html", schedules=await self.admin.list_schedules())

    async def workers(self, request: Request) -> Response:
        return self.render(request, "workers.html", workers=await self.admin.list_workers())

    async def login_form(self, request: Request) -> Response:
        return self.render(request, "login.html", failed=False)

    async def login(self, request: Request) -> Response:
        refused = await self._check_post(request, need_auth=False)
        if refused is not None:
            return refused
        if self._token is None:
            return self._error(request, 403, "This dashboard is read-only (no token is set).")
        given = (await request.form()).get("token")
        if not isinstance(given, str) or not hmac.compare_digest(
            given.encode(), self._token.encode()
        ):
            return self.render(request, "login.html", status=403, failed=True)
        response = RedirectResponse(str(request.url_for("overview")), status_code=303)
        response.set_cookie(
            AUTH_COOKIE, self._auth_value(), httponly=True, samesite="strict", path="/"
        )
        return response

    async def logout(self, request: Request) -> Response:
        refused = await self._check_post(request, need_auth=False)
        if refused is not None:
            return refused
        response = RedirectResponse(str(request.url_for("overview")), status_code=303)
        response.delete_cookie(AUTH_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return self._error(request, 404, "Not found.")


_Handler = Callable[[Request], Awaitable[Response]]


def _build(
    get_admin: Callable[[], Admin],
    *,
    token: str | None,
    title: str,
    lifespan: Callable[[Starlette], Any] | None = None,
    auth: AuthHook | None = None,
) -> Starlette:
    d = _Dashboard(get_admin, token, title, auth)

    def page(path: str, fn: _Handler, name: str, methods: list[str] | None = None) -> Route:
        return Route(path, fn, name=name, methods=methods or ["GET"])

    routes = [
        page("/", d.overview, "overview"),
        page("/fragments/overview", d.overview_fragment, "overview_fragment"),
        page("/jobs", d.jobs, "jobs"),
        page("/fragments/jobs", d.jobs_fragment, "jobs_fragment"),
        page("/jobs/{job_id}", d.job, "job"),
        page("/jobs/{job_id}/{action}", d.job_action, "job_action", ["POST"]),
        page("/queues", d.queues, "queues"),
        page("/queues/{name}/{action}", d.queue_action, "queue_action", ["POST"]),
        page("/schedules", d.schedules, "schedules"),
        page("/workers", d.workers, "workers"),
        page("/login", d.login_form, "login_form"),
        page("/login", d.login, "login", ["POST"]),
        page("/logout", d.logout, "logout", ["POST"]),
        Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: d.not_found})
    app.add_middleware(_SecurityHeaders)
    return app


def create_app(
    admin: Admin,
    *,
    token: str | None = None,
    auth: AuthHook | None = None,
    title: str = "job",
) -> Starlette:
    """The dashboard on ``admin`` (mountable under any path). Writes are allowed to whoever
    ``auth`` names (e.g. :func:`basic_auth`, or your own hook), or to whoever logged in
    with ``token``; with neither, the dashboard is read-only. Every POST needs its CSRF
    field either way, and writes are recorded as ``dashboard:<operator>``."""
    return _build(lambda: admin, token=token, title=title, auth=auth)


def _app_for_database(
    *, dsn: str | None, sqlite_path: str | None, token: str | None, title: str = "job"
) -> Starlette:
    """The dashboard with its own ``Admin.connect`` opened in the app's lifespan."""
    holder: dict[str, Admin] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with Admin.connect(dsn=dsn, sqlite_path=sqlite_path) as admin:
            holder["admin"] = admin
            yield
            holder.clear()

    def get_admin() -> Admin:
        if "admin" not in holder:
            raise ConfigError("the dashboard's database is not open")
        return holder["admin"]

    return _build(get_admin, token=token, title=title, lifespan=lifespan)


def serve(
    *,
    dsn: str | None,
    sqlite_path: str | None,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
) -> int:
    """Serve the dashboard with uvicorn until interrupted (``job dashboard``). ``token``
    defaults to ``$JOB_DASHBOARD_TOKEN``; without one the dashboard is read-only."""
    import uvicorn

    if (dsn is None) == (sqlite_path is None):
        raise ConfigError("the dashboard takes one of dsn= or sqlite_path=")
    if token is None:
        token = os.environ.get("JOB_DASHBOARD_TOKEN") or None
    app = _app_for_database(dsn=dsn, sqlite_path=sqlite_path, token=token)
    uvicorn.run(app, host=host, port=port, log_level="info", lifespan="on")
    return 0
