"""Domain errors: each one maps to one HTTP problem type at the API boundary."""

from __future__ import annotations


class DomainError(Exception):
    """A command was refused by the rules of the domain."""

    code = "domain-error"


class NotFound(DomainError):
    code = "not-found"


class Forbidden(DomainError):
    code = "forbidden"


class InvalidTransition(DomainError):
    code = "invalid-transition"


class Invalid(DomainError):
    """A command is well-formed but breaks a rule (an unknown category, a bad role)."""

    code = "invalid-command"


class AlreadyExists(DomainError):
    code = "already-exists"
