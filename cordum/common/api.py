"""DRF glue shared by every app: the exception handler and a flattened validation message."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import HttpResponseBadRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import exception_handler as drf_exception_handler

from cordum.common.errors import CordumError

UUID_PATH = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
"""A UUID in a URL: anything else is a 404 at routing, never a database error."""


class Router(SimpleRouter):
    """The apps' router: detail routes take ids of at most 18 digits (always a bigint) unless a viewset sets
    `lookup_value_regex`, so `/agents/abc/` or a 30-digit id is a 404 at routing, never a database error."""

    def get_lookup_regex(self, viewset, lookup_prefix=""):
        kwarg = getattr(viewset, "lookup_url_kwarg", None) or getattr(viewset, "lookup_field", "pk")
        value = getattr(viewset, "lookup_value_regex", "[0-9]{1,18}")
        return f"(?P<{lookup_prefix}{kwarg}>{value})"


class Pagination(LimitOffsetPagination):
    """Every list's pagination: `limit` is capped at max_limit and an `offset` past any table is a 400 naming it
    (DRF passes both to SQL unchecked: a 30-digit limit was a bigint overflow, a 500)."""

    max_limit = 1000
    max_offset = 2**31 - 1

    def get_offset(self, request):
        offset = super().get_offset(request)
        if offset > self.max_offset:
            raise exceptions.ValidationError({self.offset_query_param: [f"must be at most {self.max_offset}."]})
        return offset


class QueryStringGuard:
    """Middleware: a query parameter with a NUL character is a 400 naming it (PostgreSQL text cannot hold NUL,
    so every filter would otherwise fail with a server error). Request bodies are checked by serializers."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                message = f"Invalid input: {name.replace(chr(0), '')}: must not contain NUL characters."
                if request.path.startswith("/api/"):
                    return JsonResponse({"message": message, "extra": {"field": name.replace(chr(0), "")}}, status=400)
                return HttpResponseBadRequest(message)
        return self.get_response(request)


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
