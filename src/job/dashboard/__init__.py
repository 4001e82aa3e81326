"""The web dashboard: a Starlette app over :class:`job.admin.Admin` (no SQL of its own).

``create_app(admin, token=...)`` builds a mountable app; ``serve(dsn=..., sqlite_path=...)``
runs it with uvicorn (``job dashboard``). Without a token the dashboard is read-only (every
write is 403). With one, writes need the login cookie (an HMAC of the token) or
``Authorization: Bearer <token>``; an ``auth=`` hook (``basic_auth(...)`` or your own)
names the operator instead. Every POST needs the page's CSRF field. See
docs/operations.md and docs/security.md.
"""

from __future__ import annotations

from job.dashboard.app import AuthHook, basic_auth, create_app, serve

__all__ = ["AuthHook", "basic_auth", "create_app", "serve"]
