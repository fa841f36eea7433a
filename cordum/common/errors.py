"""The one exception type for expected failures; the API handler maps it to a response."""


class CordumError(Exception):
    """An expected failure with a plain message for people and machine-readable extra data."""

    status_code = 400

    def __init__(self, message: str, extra: dict | None = None, *, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
        if status_code is not None:
            self.status_code = status_code


class NotFound(CordumError):
    status_code = 404


class Conflict(CordumError):
    status_code = 409
