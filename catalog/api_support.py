"""Project-wide API plumbing: the one exception handler every API view uses."""

from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from catalog.errors import ApplicationError


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
