"""Project-wide API plumbing: the one exception handler every API view uses, and the one place
where path and query parameters are parsed and range-checked (ids, version numbers, pagination,
control characters), so every endpoint answers a bad parameter with a 400 naming it and the
OpenAPI schema (``config.schema``) states the same ranges."""

import re
from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, pagination, parsers, status
from rest_framework.response import Response

from catalog.errors import ApplicationError


# Ids are bigint primary keys: 1 .. 2^63-1. A number outside names nothing and would overflow
# the database's integer (PostgreSQL) or Python's conversion to it (SQLite).
ID_RANGE = (1, 2**63 - 1)
# Version numbers are a PositiveIntegerField (a 32-bit integer in PostgreSQL and MariaDB).
VERSION_NUMBER_RANGE = (1, 2**31 - 1)
# Integer path parameters, by their name in the URL pattern; any other is an id.
PATH_PARAMETER_RANGES = {"number": VERSION_NUMBER_RANGE}
# What the OpenAPI schema calls a path parameter that the URL pattern calls ``pk``.
PATH_PARAMETER_NAMES = {"pk": "id"}

# Text may hold tab, line feed and carriage return, never another control character (NUL
# included: PostgreSQL cannot store it, and the others only hide what a value says).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# The same rule as an OpenAPI ``pattern`` (ECMA-262), set on every string input of the schema.
TEXT_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*$"
CONTROL_CHARACTERS_MESSAGE = "Control characters (other than tab and line breaks) are not allowed."


def invalid_parameters(errors: dict[str, list[str]]) -> exceptions.ValidationError:
    return exceptions.ValidationError(errors)


def parse_int(raw, *, name: str, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high`` written in decimal digits (an optional ``-``),
    or a 400 naming ``name``. ``1e3``, ``1.0`` and ``-1.09e166`` are refused, not rounded."""
    text = str(raw).strip()
    if not re.fullmatch(r"-?[0-9]{1,30}", text) or not low <= int(text) <= high:
        raise invalid_parameters({name: [f"Must be a whole number from {low} to {high}."]})
    return int(text)


def query_int(request, name: str, *, low: int, high: int, required: bool = False, default=None):
    """The integer query parameter ``name`` (``default`` when absent or empty), range-checked."""
    raw = request.query_params.get(name, "")
    if raw == "":
        if required:
            raise invalid_parameters({name: [f"Required: a whole number from {low} to {high}."]})
        return default
    return parse_int(raw, name=name, low=low, high=high)


def query_ints(request, names_and_ranges: dict[str, tuple[int, int]], *, required: bool = True) -> dict[str, int]:
    """Several integer query parameters at once; one 400 lists every bad one."""
    values, errors = {}, {}
    for name, (low, high) in names_and_ranges.items():
        try:
            values[name] = query_int(request, name, low=low, high=high, required=required)
        except exceptions.ValidationError as exc:
            errors.update(exc.detail)
    if errors:
        raise invalid_parameters(errors)
    return values


def int_parameter(name: str, *, low: int, high: int, required: bool = False, description: str = ""):
    """The OpenAPI description of an integer query parameter that :func:`query_int` parses."""
    from drf_spectacular.utils import OpenApiParameter

    return OpenApiParameter(
        name, {"type": "integer", "format": "int64", "minimum": low, "maximum": high},
        required=required, description=description,
    )


class ApiParameterMiddleware:
    """Checks what the URL carries before any API view runs: integer path parameters are in
    their range (ids 1..2^63-1, version numbers 1..2^31-1) and no path or query parameter holds
    a control character. Anything else is a 400 naming the parameter, as the schema says.
    A path under /api/ that names no endpoint (``/api/v1/datasets/abc/``) is a JSON 404, like
    every other answer of the API, not the site's HTML page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (request.path.startswith("/api/") and response.status_code == status.HTTP_404_NOT_FOUND
                and getattr(request, "resolver_match", None) is None):
            return JsonResponse({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not request.path.startswith("/api/"):
            # A page whose id no row can have names nothing: the catalog's 404, not a database error.
            for name, value in view_kwargs.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    low, high = PATH_PARAMETER_RANGES.get(name, ID_RANGE)
                    if not low <= value <= high:
                        raise Http404(f"No such {name}.")
            return None
        errors: dict[str, list[str]] = {}
        for name, value in view_kwargs.items():
            public_name = PATH_PARAMETER_NAMES.get(name, name)
            if isinstance(value, int) and not isinstance(value, bool):
                low, high = PATH_PARAMETER_RANGES.get(name, ID_RANGE)
                if not low <= value <= high:
                    errors[public_name] = [f"Must be a whole number from {low} to {high}."]
            elif isinstance(value, str) and CONTROL_CHARACTERS.search(value):
                errors[public_name] = [CONTROL_CHARACTERS_MESSAGE]
        for name, values in request.GET.lists():
            if CONTROL_CHARACTERS.search(name) or any(CONTROL_CHARACTERS.search(value) for value in values):
                errors[name] = [CONTROL_CHARACTERS_MESSAGE]
        if errors:
            return JsonResponse({"detail": "Invalid input.", "errors": errors}, status=status.HTTP_400_BAD_REQUEST)
        return None


def text_problems(value, path: str = "") -> dict[str, list[str]]:
    """Every string (keys included) in parsed JSON that holds a control character, by its path."""
    problems: dict[str, list[str]] = {}
    if isinstance(value, str):
        if CONTROL_CHARACTERS.search(value):
            problems[path or "non_field_errors"] = [CONTROL_CHARACTERS_MESSAGE]
    elif isinstance(value, dict):
        for key, item in value.items():
            item_path = f"{path}.{key}" if path else str(key)
            if CONTROL_CHARACTERS.search(str(key)):
                problems[item_path] = [CONTROL_CHARACTERS_MESSAGE]
            problems.update(text_problems(item, item_path))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems.update(text_problems(item, f"{path}[{index}]"))
    return problems


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser that also refuses control characters in any string of the body, as
    the schema's ``pattern`` on every string says (a 400 naming each path)."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        problems = text_problems(data)
        if problems:
            raise invalid_parameters(problems)
        return data


class CursorPagination(pagination.CursorPagination):
    """DRF's cursor pagination with checked parameters: ``page_size`` is a whole number from 1
    to ``max_page_size`` and ``cursor`` one this API handed out, else a 400 naming it (DRF
    would silently use the default size, cap a larger one, or answer 404 for a bad cursor)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request):
        return query_int(request, self.page_size_query_param, low=1, high=self.max_page_size, default=self.page_size)

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            raise invalid_parameters({self.cursor_query_param: ["Not a cursor from this list's next or previous link."]}) from None
        if cursor is not None and cursor.position is not None and not self._position_fits(cursor.position):
            raise invalid_parameters({self.cursor_query_param: ["Not a cursor from this list's next or previous link."]})
        return cursor

    def _position_fits(self, position: str) -> bool:
        """A decoded position must compare with the ordering column without a database error."""
        if CONTROL_CHARACTERS.search(position):
            return False
        field = self.ordering[0].lstrip("-") if isinstance(self.ordering, (list, tuple)) else self.ordering.lstrip("-")
        if field in ("id", "pk", "number"):
            return bool(re.fullmatch(r"[0-9]{1,19}", position)) and int(position) <= ID_RANGE[1]
        return True

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
                parameter["description"] = f"Results per page, 1 to {self.max_page_size} (default {self.page_size})."
        return parameters


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """DRF's limit/offset pagination with checked parameters: ``limit`` from 1 to ``max_limit``,
    ``offset`` from 0, else a 400 naming it."""

    default_limit = 50
    max_limit = 500

    def get_limit(self, request):
        return query_int(request, self.limit_query_param, low=1, high=self.max_limit, default=self.default_limit)

    def get_offset(self, request):
        return query_int(request, self.offset_query_param, low=0, high=ID_RANGE[1], default=0)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_limit)
                parameter["description"] = f"Results per page, 1 to {self.max_limit} (default {self.default_limit})."
            elif parameter["name"] == self.offset_query_param:
                parameter["schema"].update(minimum=0, maximum=ID_RANGE[1])
        return parameters


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "payload_too_large"


def _flatten(detail, prefix="") -> dict[str, list[str]]:
    """DRF's nested error detail -> ``{"columns[1].name": ["..."]}``."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            for sub_key, messages in _flatten(value, path).items():
                flat.setdefault(sub_key, []).extend(messages)
    elif isinstance(detail, list) and detail and all(isinstance(item, (dict, list)) for item in detail):
        for index, value in enumerate(detail):
            for sub_key, messages in _flatten(value, f"{prefix}[{index}]").items():
                flat.setdefault(sub_key, []).extend(messages)
    elif isinstance(detail, list):
        flat[prefix or "non_field_errors"] = [str(item) for item in detail]
    else:
        flat[prefix or "non_field_errors"] = [str(detail)]
    return flat


def _invalid(errors: dict[str, list[str]]) -> Response:
    return Response({"detail": "Invalid input.", "errors": errors}, status=status.HTTP_400_BAD_REQUEST)


def exception_handler(exc, context):
    """Map domain and Django errors to API responses: ``{"detail": ..., "errors": {field: [...]}}``."""
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return _invalid({field: list(messages) for field, messages in exc.message_dict.items()})
        return _invalid({"non_field_errors": list(exc.messages)})
    if isinstance(exc, ApplicationError):
        return Response({"detail": exc.message, **exc.extra}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes.")
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    if isinstance(exc, exceptions.ValidationError):
        return _invalid(_flatten(exc.detail))
    # Imported here: rest_framework.views reads DEFAULT_PARSER_CLASSES, which names this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    return drf_exception_handler(exc, context)


@contextmanager
def errors_named_as_in(serializer):
    """Report a service's field errors under the serializer's camelCase names
    (``sample_size`` -> ``sampleSize``), so a 400 names what the caller sent."""
    names = {field.source: name for name, field in serializer.fields.items() if field.source != "*"}
    try:
        yield
    except DjangoValidationError as exc:
        if not hasattr(exc, "error_dict"):
            raise
        raise exceptions.ValidationError(
            {names.get(field, field): list(messages) for field, messages in exc.message_dict.items()}
        ) from exc
