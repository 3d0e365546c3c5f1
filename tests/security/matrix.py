"""The machinery of the HTTP permission matrix: enumerate routes, run one request as
one actor without changing the world, and compare with what was declared.

A declared outcome is one token per actor (``world.ACTORS`` order):

- a status code (``200``, ``404``, ``403``, ``401``, ``400``, ``409``...);
- ``login``: a redirect to the sign-in page (pages, anonymous);
- ``admin``: a redirect to the admin's sign-in page;
- ``302``: a redirect somewhere else.

Every request runs inside a savepoint that is rolled back, so an allowed write
does not change what the next request sees. A refused one (4xx, or a redirect to
sign in) must not have written anything but audit events and sessions while it
ran: PostgreSQL's per-transaction row counters (``pg_stat_xact_user_tables``)
show any insert, update or delete, even one a service rolled back itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.shortcuts import resolve_url
from django.urls import URLPattern, URLResolver, get_resolver

from tests.security.world import ACTORS

# What a refused request may still write: the audit trail of the refusal itself,
# the session (last activity) and django-axes' bookkeeping of sign-in attempts.
MAY_CHANGE_WHEN_REFUSED = {
    "telehealth_auditevent",
    "django_session",
    "axes_accessattempt",
    "axes_accessfailurelog",
    "axes_accesslog",
}

WRITE_METHODS = ("post", "put", "patch", "delete")


@dataclass(frozen=True)
class Route:
    route: str  # "api/v1/threads/<int:thread_id>/"
    name: str | None
    callback: Any

    @property
    def key(self) -> str:
        return self.name or self.route

    @property
    def view_class(self) -> Any:
        return getattr(self.callback, "view_class", None) or getattr(self.callback, "cls", None)

    def implemented_methods(self) -> set[str] | None:
        """The HTTP methods a class-based view answers (None for function views)."""
        view = self.view_class
        if view is None:
            return None
        return {
            method.upper()
            for method in ("get", *WRITE_METHODS)
            if hasattr(view, method) and method in getattr(view, "http_method_names", [])
        }


def all_routes() -> list[Route]:
    """Every URL pattern of the project, resolvers walked recursively."""

    def walk(patterns: list, prefix: str) -> list[Route]:
        found: list[Route] = []
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                found += walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                found.append(Route(prefix + str(pattern.pattern), pattern.name, pattern.callback))
        return found

    return walk(get_resolver().url_patterns, "")


@dataclass
class Check:
    """One method of one route, with the outcome per actor and a minimal body."""

    method: str
    expect: str
    body: Any = None
    multipart: bool = False
    query: str = ""
    # Outsiders who may, by design, be answered with the patient's data here (an
    # emergency access): the leak check does not apply to their allowed answers.
    reveals: tuple[str, ...] = ()
    # Tables a refused request may still write here, and why (declared per check).
    may_write: tuple[str, ...] = ()

    def outcomes(self) -> dict[str, str]:
        tokens = self.expect.split()
        assert len(tokens) == len(ACTORS), f"{self.expect!r}: one outcome per actor"
        return dict(zip(ACTORS, tokens, strict=True))


@dataclass
class Case:
    checks: list[Check]
    kwargs: dict[str, Any] = field(default_factory=dict)  # values or callables of the world


def GET(expect: str, query: str = "") -> Check:
    return Check("GET", expect, query=query)


def POST(
    expect: str,
    body: Any = None,
    *,
    multipart: bool = False,
    reveals: tuple[str, ...] = (),
    may_write: tuple[str, ...] = (),
) -> Check:
    return Check(
        "POST",
        expect,
        body={} if body is None else body,
        multipart=multipart,
        reveals=reveals,
        may_write=may_write,
    )


def PUT(expect: str, body: Any = None) -> Check:
    return Check("PUT", expect, body={} if body is None else body)


def PATCH(expect: str, body: Any = None) -> Check:
    return Check("PATCH", expect, body={} if body is None else body)


def DELETE(expect: str) -> Check:
    return Check("DELETE", expect)


def fill(route: str, values: dict[str, Any]) -> str:
    """The path of a route with its converters replaced by values."""
    import re

    def replace(match: re.Match) -> str:
        name = match.group("name")
        assert name in values, f"route {route!r}: no value for <{name}>"
        return str(values[name])

    return "/" + re.sub(r"<(?:(?P<conv>\w+):)?(?P<name>\w+)>", replace, route)


def _row_changes() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_xact_user_tables"
        )
        return {name: count for name, count in cursor.fetchall() if count}


@dataclass
class Outcome:
    status: int
    location: str
    body: bytes
    headers: str
    changed: set[str]

    def token(self) -> str:
        if self.status in (301, 302, 303, 307, 308):
            if self.location.startswith(resolve_url(settings.LOGIN_URL)):
                return "login"
            if self.location.startswith("/admin/login/"):
                return "admin"
            return "302"
        return str(self.status)


def perform(client: Any, method: str, path: str, check: Check | None) -> Outcome:
    """One request in a savepoint that is rolled back afterwards."""
    body = None if check is None else check.body
    with transaction.atomic():
        before = _row_changes()
        if method == "GET":
            response = client.get(path + (check.query if check else ""))
        elif check is not None and check.multipart:
            response = client.post(path, body)
        else:
            response = client.generic(
                method,
                path,
                json.dumps(body if body is not None else {}),
                content_type="application/json",
            )
        after = _row_changes()
        transaction.set_rollback(True)
    if getattr(response, "streaming", False):
        content = b"".join(response.streaming_content)
    else:
        content = response.content
    changed = {name for name, count in after.items() if count != before.get(name, 0)}
    return Outcome(
        status=response.status_code,
        location=response.get("Location", ""),
        body=content,
        headers=" ".join(f"{k}: {v}" for k, v in response.items()),
        changed=changed,
    )


def leaks(outcome: Outcome, secrets: tuple[str, ...]) -> list[str]:
    """The secrets that appear in an answer, raw or JSON-escaped."""
    text = outcome.body.decode("utf-8", "replace") + "\n" + outcome.headers
    found = []
    for secret in secrets:
        escaped = json.dumps(secret)[1:-1]
        if secret in text or escaped in text:
            found.append(secret)
    return found


def refused(token: str) -> bool:
    return token in ("login", "admin") or (token.isdigit() and int(token) >= 400)
