"""One exception family for domain rules, translated to HTTP or websocket errors in one place."""

from __future__ import annotations


class DomainError(Exception):
    """A rule of the service said no. ``code`` is stable and machine-readable."""

    status = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, fields: dict | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.fields = fields or {}


class NotFound(DomainError):
    status = 404
    code = "not_found"


class AccessDenied(DomainError):
    """The user may not see or do this. Views answer 404 where existence itself is private."""

    status = 403
    code = "forbidden"


class Conflict(DomainError):
    status = 409
    code = "conflict"
