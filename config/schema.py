"""The OpenAPI schema says what the server does, in one place rather than on each view.

A drf-spectacular postprocessing hook (``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]``) that

- documents, on every operation, the error statuses it can answer with their body shape
  (``catalog.api_support.exception_handler``): 400 ``{"detail", "errors": {field: [...]}}``,
  401, 403, 404, 413 and 415 ``{"detail"}``;
- states the ranges ``catalog.api_support`` enforces on integer path and query parameters
  (ids 1..2^63-1, version numbers 1..2^31-1) where a view did not give its own;
- puts the control-character rule (``api_support.TEXT_PATTERN``) on every string input: path
  and query parameters and the properties of request bodies, which the API's JSON parser and
  parameter middleware refuse with a 400 naming the field.
"""

from catalog.api_support import ID_RANGE, PATH_PARAMETER_NAMES, PATH_PARAMETER_RANGES, TEXT_PATTERN

ERROR_COMPONENT = "Error"
VALIDATION_ERROR_COMPONENT = "ValidationError"

ERROR_SCHEMAS = {
    ERROR_COMPONENT: {
        "type": "object",
        "description": "Why the request was refused. Some refusals add keys that name the object concerned.",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
    },
    VALIDATION_ERROR_COMPONENT: {
        "type": "object",
        "description": (
            "Bad input: `errors` lists every problem by the path of its field or parameter "
            "(`columns[2].sensitivity`, `page_size`); a refusal by a domain rule has only `detail` "
            "(and keys naming the object concerned)."
        ),
        "properties": {
            "detail": {"type": "string"},
            "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        },
        "required": ["detail"],
    },
}

# Status -> (description, component); which operations get each is decided in _error_statuses.
ERROR_RESPONSES = {
    "400": ("Bad input (every problem, by field or parameter) or a refusal by a domain rule.", VALIDATION_ERROR_COMPONENT),
    "401": ("No credentials, or credentials that are not valid.", ERROR_COMPONENT),
    "403": ("The caller may not do this (or the CSRF check failed for a browser session).", ERROR_COMPONENT),
    "404": ("No such object, or one the caller may not see.", ERROR_COMPONENT),
    "413": ("The request body is over the size limit.", ERROR_COMPONENT),
    "415": ("The request body is not JSON.", ERROR_COMPONENT),
}

HTTP_METHODS = ("get", "put", "post", "patch", "delete")
_SCHEMA_PATH_RANGES = {PATH_PARAMETER_NAMES.get(name, name): bounds for name, bounds in PATH_PARAMETER_RANGES.items()}


def api_contract_hook(result, generator, request, public):
    """Postprocessing hook: error responses, parameter ranges and text patterns (see module)."""
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(ERROR_SCHEMAS)
    request_components: set[str] = set()
    for path_item in result.get("paths", {}).values():
        for method in HTTP_METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            for parameter in operation.get("parameters", []):
                _constrain_parameter(parameter)
            for media in operation.get("requestBody", {}).get("content", {}).values():
                _constrain_text(media.get("schema", {}), schemas, request_components)
            _document_errors(method, operation)
    return result


def _constrain_parameter(parameter: dict) -> None:
    schema = parameter.get("schema", {})
    if schema.get("type") == "integer" and "minimum" not in schema and "maximum" not in schema:
        if parameter.get("in") == "path":
            low, high = _SCHEMA_PATH_RANGES.get(parameter["name"], ID_RANGE)
        else:  # an id filter (catalog.filtersets.IdFilter); other integers declare their own range
            low, high = ID_RANGE
        schema.update(minimum=low, maximum=high, format="int64")
    elif parameter.get("in") in ("path", "query"):
        _constrain_text(schema, {}, set())


def _constrain_text(schema: dict, schemas: dict, seen: set[str]) -> None:
    """Add the control-character pattern to every free string under ``schema`` (following refs)."""
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        if name not in seen and name in schemas:
            seen.add(name)
            _constrain_text(schemas[name], schemas, seen)
        return
    if schema.get("type") == "string" and not ({"enum", "format", "pattern"} & set(schema)):
        schema["pattern"] = TEXT_PATTERN
    for key in ("items", "additionalProperties"):
        _constrain_text(schema.get(key), schemas, seen)
    for sub in schema.get("properties", {}).values():
        _constrain_text(sub, schemas, seen)
    for key in ("allOf", "oneOf", "anyOf"):
        for sub in schema.get(key, []):
            _constrain_text(sub, schemas, seen)


def _error_statuses(method: str, operation: dict) -> list[str]:
    parameters = operation.get("parameters", [])
    has_body = "requestBody" in operation
    names_an_object = any(p.get("in") == "path" for p in parameters) or any(
        p.get("in") == "query" and p.get("required") and p.get("schema", {}).get("type") == "integer"
        for p in parameters
    )
    statuses = ["401", "403"]
    if method != "get" or parameters:
        statuses.append("400")
    if names_an_object:
        statuses.append("404")
    if has_body:
        statuses += ["413", "415"]
    return statuses


def _document_errors(method: str, operation: dict) -> None:
    responses = operation.setdefault("responses", {})
    for status in _error_statuses(method, operation):
        description, component = ERROR_RESPONSES[status]
        response = responses.setdefault(status, {"description": description})
        response.setdefault("content", {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}})
