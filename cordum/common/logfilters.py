"""Logging filters for the console handler."""

import logging


class ExpectedRefusalsWithoutTraceback(logging.Filter):
    """Django logs every 403/404 raised as an exception (PermissionDenied, Http404) with its traceback. They are
    answers, not faults: keep the one-line warning, drop the traceback that buries real errors in the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "django.request" and getattr(record, "status_code", None) in (401, 403, 404, 405):
            record.exc_info = None
            record.exc_text = None
        return True
