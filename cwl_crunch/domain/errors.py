"""One exception tree for the whole service; the HTTP layer maps each class to a status code."""

from __future__ import annotations


class CrunchError(Exception):
    """Something went wrong in cwl-crunch."""

    def __init__(self, *messages: str) -> None:
        self.messages = list(messages) or [self.__doc__ or type(self).__name__]
        super().__init__("; ".join(self.messages))


class Unauthenticated(CrunchError):
    """Missing or invalid token."""


class Forbidden(CrunchError):
    """This token is not allowed to do that."""


class NotFound(CrunchError):
    """No such object (or it is not visible to this token)."""


class Invalid(CrunchError):
    """The request is not valid."""


class InvalidTransition(Invalid):
    """That state change is not allowed."""


class LockConflict(Invalid):
    """The container could not be locked or unlocked."""


class Conflict(CrunchError):
    """A concurrent change won; retry the request."""
