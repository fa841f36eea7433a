"""DRF glue shared by every app: the exception handler and a flattened validation message."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from cordum.common.errors import CordumError


def _first_error(detail, path=""):
    """Return (field_path, message) for the first leaf error, so a 400 names the field."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            sub = f"{path}.{key}" if path else str(key)
            return _first_error(value, sub)
    if isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, dict | list):
                return _first_error(value, f"{path}[{index}]")
            return path, str(value)
    return path, str(detail)


def exception_handler(exc, context):
    if isinstance(exc, CordumError):
        return Response({"message": exc.message, "extra": exc.extra}, status=exc.status_code)
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, exceptions.ValidationError):
        field, message = _first_error(exc.detail)
        text = f"{field}: {message}" if field and field != "non_field_errors" else message
        return Response(
            {"message": f"Invalid input: {text}", "extra": {"fields": exc.detail}},
            status=status.HTTP_400_BAD_REQUEST,
        )
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"message": str(response.data["detail"]), "extra": {}}
    return response
