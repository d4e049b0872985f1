"""SCIM 2.0 endpoints (RFC 7643/7644) for a directory's provisioning client: Users and Groups
(create, read, replace, PATCH, delete; filter and pagination on lists) and the discovery
resources. Thin views: parse, call ``identity.provisioning``, render. Only a SCIM token opens them."""

import hashlib

from django.core.exceptions import RequestDataTooBig
from django.db.models import Prefetch
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, parsers, renderers
from rest_framework.response import Response
from rest_framework.views import APIView

from access.audit import client_address
from access.models import User
from catalog.api_support import JSONParser
from identity import provisioning
from identity.models import DirectoryGroup
from identity.provisioning import ScimError, invalid
from identity.scim_filters import Field, FilterError, scim_filter_q
from identity.scim_tokens import ScimTokenAuthentication

SCIM_MEDIA_TYPE = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
DEFAULT_COUNT, MAX_COUNT = 100, 500

USER_FILTERS = {
    "id": Field("pk", "id"), "userName": Field("username"), "externalId": Field("directory_account__external_id"),
    "emails": Field("email"), "emails.value": Field("email"),
    "name.givenName": Field("first_name"), "name.familyName": Field("last_name"), "active": Field("is_active", "bool"),
}
GROUP_FILTERS = {
    "id": Field("pk", "id"), "displayName": Field("display_name"), "externalId": Field("external_id"),
    "members": Field("members__pk", "id"), "members.value": Field("members__pk", "id"),
}


class ScimRenderer(renderers.JSONRenderer):
    media_type = SCIM_MEDIA_TYPE


class ScimParser(JSONParser):
    media_type = SCIM_MEDIA_TYPE


def _error_body(status: int, detail: str, scim_type: str = "") -> dict:
    body = {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return body


def scim_exception_handler(exc, context):
    """Every error of a SCIM view as a SCIM error body (``schemas``, ``status``, ``scimType``, ``detail``)."""
    headers = {}
    if isinstance(exc, ScimError):
        status, detail, scim_type = exc.status, exc.detail, exc.scim_type
    elif isinstance(exc, Http404):
        status, detail, scim_type = 404, "No such resource.", ""
    elif isinstance(exc, RequestDataTooBig):
        status, detail, scim_type = 413, "The body is larger than the catalog accepts.", ""
    elif isinstance(exc, exceptions.ParseError):
        status, detail, scim_type = 400, f"The body is not valid JSON: {exc.detail}", "invalidSyntax"
    elif isinstance(exc, exceptions.ValidationError):  # the parser's control-character rule
        status, detail, scim_type = 400, f"Invalid value: {exc.detail}", "invalidValue"
    elif isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        status, detail, scim_type = 401, str(exc.detail), ""
        headers["WWW-Authenticate"] = 'Bearer realm="scim"'
    elif isinstance(exc, exceptions.APIException):
        status, detail, scim_type = exc.status_code, str(exc.detail), ""
    else:
        return None
    return Response(_error_body(status, detail, scim_type), status=status, headers=headers,
                    content_type=SCIM_MEDIA_TYPE)


class IsScimClient:
    """Only a request that a SCIM token authenticated (never a session, never an API token)."""

    def has_permission(self, request, view):
        return isinstance(request.successful_authenticator, ScimTokenAuthentication)

    def has_object_permission(self, request, view, obj):
        return True


@extend_schema(exclude=True)
class ScimApi(APIView):
    authentication_classes = [ScimTokenAuthentication]
    permission_classes = [IsScimClient]
    renderer_classes = [ScimRenderer, renderers.JSONRenderer]
    parser_classes = [ScimParser, JSONParser]

    def get_exception_handler(self):
        return scim_exception_handler

    def permission_denied(self, request, message=None, code=None):
        raise exceptions.NotAuthenticated("A SCIM bearer token is required.")

    def scim(self, body, status=200, headers=None):
        version = body.get("meta", {}).get("version") if isinstance(body, dict) else None
        if version:  # one resource: its version as the ETag header too (RFC 7644 §3.14)
            headers = {**(headers or {}), "ETag": version}
        return Response(body, status=status, headers=headers, content_type=SCIM_MEDIA_TYPE)

    def location(self, kind: str, pk) -> str:
        return self.request.build_absolute_uri(f"/scim/v2/{kind}/{pk}")

    def body(self) -> dict:
        data = self.request.data
        if not isinstance(data, dict):
            raise invalid("The body must be a JSON object.", "invalidSyntax")
        return data

    def remote_addr(self) -> str:
        return client_address(self.request)


def _version(*parts) -> str:
    return 'W/"' + hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16] + '"'


def _page(request, queryset, filters: dict, render) -> dict:
    """A ListResponse of ``queryset`` narrowed by the ``filter`` parameter, paged by ``startIndex``
    (1-based) and ``count``."""
    text = request.query_params.get("filter", "").strip()
    if text:
        try:
            queryset = queryset.filter(scim_filter_q(text, filters)).distinct()
        except FilterError as exc:
            raise invalid(f"filter: {exc}", "invalidFilter") from None
    start = _number(request, "startIndex", 1)
    count = min(_number(request, "count", DEFAULT_COUNT), MAX_COUNT)
    start, count = max(start, 1), max(count, 0)
    total = queryset.count()
    resources = [render(item) for item in queryset.order_by("pk")[start - 1:start - 1 + count]] if count else []
    return {"schemas": [LIST_SCHEMA], "totalResults": total, "startIndex": start, "itemsPerPage": len(resources),
            "Resources": resources}


def _number(request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise invalid(f"'{name}' must be a whole number.") from None
    if abs(number) > 2**31:
        raise invalid(f"'{name}' is out of range.")
    return number


# Users ---------------------------------------------------------------------------------------


def _users():
    return provisioning.scim_users().select_related("directory_account").prefetch_related(
        Prefetch("directory_groups", queryset=DirectoryGroup.objects.only("pk", "display_name")))


class UserRepresentation:
    def __init__(self, view: ScimApi):
        self.view = view

    def __call__(self, user: User) -> dict:
        account = user.directory_account
        body = {
            "schemas": [USER_SCHEMA], "id": str(user.pk), "userName": user.username,
            "name": {"givenName": user.first_name, "familyName": user.last_name,
                     "formatted": user.get_full_name()},
            "displayName": user.display_name, "active": user.is_active,
            "emails": [{"value": user.email, "primary": True, "type": "work"}] if user.email else [],
            "groups": [{"value": str(g.pk), "display": g.display_name, "$ref": self.view.location("Groups", g.pk)}
                       for g in user.directory_groups.all()],
            "meta": {"resourceType": "User", "created": user.date_joined.isoformat(),
                     "lastModified": account.updated_at.isoformat(), "location": self.view.location("Users", user.pk),
                     "version": _version(user.pk, account.updated_at.isoformat(), user.is_active)},
        }
        if account.external_id:
            body["externalId"] = account.external_id
        return body


def _user_get(pk) -> User:
    try:
        return _users().get(pk=int(pk))
    except (ValueError, OverflowError, User.DoesNotExist):
        raise Http404 from None


class UsersApi(ScimApi):
    def get(self, request):
        return self.scim(_page(request, _users(), USER_FILTERS, UserRepresentation(self)))

    def post(self, request):
        fields = provisioning.user_fields_from(self.body())
        user = provisioning.scim_user_create(client=request.user, fields=fields, remote_addr=self.remote_addr())
        return self.scim(UserRepresentation(self)(_user_get(user.pk)), status=201,
                         headers={"Location": self.location("Users", user.pk)})


class UserApi(ScimApi):
    def get(self, request, pk):
        return self.scim(UserRepresentation(self)(_user_get(pk)))

    def put(self, request, pk):
        user = _user_get(pk)
        fields = provisioning.user_fields_from(self.body())
        provisioning.scim_user_replace(client=request.user, user=user, fields=fields, remote_addr=self.remote_addr())
        return self.scim(UserRepresentation(self)(_user_get(pk)))

    def patch(self, request, pk):
        user = _user_get(pk)
        resource = UserRepresentation(self)(user)
        for operation in _operations(self.body()):
            _user_apply(resource, operation)
        fields = provisioning.user_fields_from(resource)
        provisioning.scim_user_replace(client=request.user, user=user, fields=fields, remote_addr=self.remote_addr())
        return self.scim(UserRepresentation(self)(_user_get(pk)))

    def delete(self, request, pk):
        provisioning.scim_user_deprovision(client=request.user, user=_user_get(pk), remote_addr=self.remote_addr())
        return Response(status=204)


def _operations(body: dict) -> list[dict]:
    """The ``Operations`` of a PatchOp body, each ``{"op": add|remove|replace, "path", "value"}``."""
    if PATCH_SCHEMA not in (body.get("schemas") or []):
        raise invalid(f"'schemas' must include {PATCH_SCHEMA}.", "invalidSyntax")
    operations = body.get("Operations", body.get("operations"))
    if not isinstance(operations, list) or not operations:
        raise invalid("'Operations' must be a non-empty list.", "invalidSyntax")
    result = []
    for number, operation in enumerate(operations, 1):
        if not isinstance(operation, dict):
            raise invalid(f"Operations[{number}] must be an object.", "invalidSyntax")
        op = str(operation.get("op", "")).lower()
        if op not in ("add", "remove", "replace"):
            raise invalid(f"Operations[{number}].op must be add, remove or replace.", "invalidSyntax")
        path = operation.get("path")
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise invalid(f"Operations[{number}].path must be a non-empty string.", "invalidPath")
        if op != "remove" and "value" not in operation:
            raise invalid(f"Operations[{number}] ({op}) needs a value.", "invalidValue")
        if op == "remove" and path is None:
            raise ScimError(400, f"Operations[{number}]: remove needs a path.", "noTarget")
        result.append({"op": op, "path": (path or "").strip(), "value": operation.get("value")})
    return result


USER_PATHS = {"username": "userName", "externalid": "externalId", "active": "active", "displayname": "displayName",
              "name": "name", "name.givenname": "name.givenName", "name.familyname": "name.familyName",
              "emails": "emails", "emails.value": "emails.value", "password": "password"}


def _user_apply(resource: dict, operation: dict) -> None:
    """Apply one PATCH operation to a User's representation (then read as a whole, like a PUT)."""
    path, value, op = operation["path"], operation["value"], operation["op"]
    if not path:
        if not isinstance(value, dict):
            raise invalid("A PATCH without a path needs an object of attributes as its value.")
        for key, item in value.items():
            _user_apply(resource, {"op": op, "path": key, "value": item})
        return
    if path.lower().startswith(USER_SCHEMA.lower() + ":"):
        path = path[len(USER_SCHEMA) + 1:]
    if path.lower().startswith("emails[") and path.endswith("].value"):
        path = "emails.value"  # emails[type eq "work"].value: the one address the catalog keeps
    key = USER_PATHS.get(path.lower())
    if key is None:
        raise invalid(f"The path '{path}' names no attribute of a User the catalog keeps.", "invalidPath")
    if key in ("displayName", "password"):
        return  # the display name is the formatted name; passwords are the identity provider's
    if op == "remove":
        if key == "userName":
            raise invalid("'userName' cannot be removed.", "mutability")
        if key == "active":
            raise invalid("'active' cannot be removed; replace it with false.", "mutability")
        value = {"name": {}, "emails": []}.get(key, "")
    if key == "name.givenName" or key == "name.familyName":
        resource.setdefault("name", {})[key.split(".")[1]] = value
    elif key == "emails.value":
        resource["emails"] = [{"value": value, "primary": True}] if value else []
    elif key == "name" and isinstance(value, dict) and op == "add":
        resource["name"] = {**resource.get("name", {}), **value}
    else:
        resource[key] = value


# Groups --------------------------------------------------------------------------------------


def _groups(request):
    groups = DirectoryGroup.objects.all()
    if _members_excluded(request):
        return groups
    return groups.prefetch_related(Prefetch("members", queryset=provisioning.scim_users().only("pk", "username")))


def _members_excluded(request) -> bool:
    excluded = request.query_params.get("excludedAttributes", "")
    return "members" in {name.strip().lower() for name in excluded.split(",")}


class GroupRepresentation:
    def __init__(self, view: ScimApi, with_members: bool = True):
        self.view, self.with_members = view, with_members

    def __call__(self, group: DirectoryGroup) -> dict:
        body = {
            "schemas": [GROUP_SCHEMA], "id": str(group.pk), "displayName": group.display_name,
            "meta": {"resourceType": "Group", "created": group.created_at.isoformat(),
                     "lastModified": group.updated_at.isoformat(), "location": self.view.location("Groups", group.pk),
                     "version": _version(group.pk, group.updated_at.isoformat())},
        }
        if self.with_members:
            body["members"] = [{"value": str(u.pk), "display": u.username, "type": "User",
                                "$ref": self.view.location("Users", u.pk)} for u in group.members.all()]
        if group.external_id:
            body["externalId"] = group.external_id
        return body


def _group_get(request, pk) -> DirectoryGroup:
    try:
        return _groups(request).get(pk=int(pk))
    except (ValueError, OverflowError, DirectoryGroup.DoesNotExist):
        raise Http404 from None


class GroupsApi(ScimApi):
    def get(self, request):
        render = GroupRepresentation(self, with_members=not _members_excluded(request))
        return self.scim(_page(request, _groups(request), GROUP_FILTERS, render))

    def post(self, request):
        fields = provisioning.group_fields_from(self.body())
        group = provisioning.scim_group_create(client=request.user, fields=fields, remote_addr=self.remote_addr())
        return self.scim(GroupRepresentation(self)(_group_get(request, group.pk)), status=201,
                         headers={"Location": self.location("Groups", group.pk)})


class GroupApi(ScimApi):
    def get(self, request, pk):
        group = _group_get(request, pk)
        return self.scim(GroupRepresentation(self, with_members=not _members_excluded(request))(group))

    def put(self, request, pk):
        group = _group_get(request, pk)
        fields = provisioning.group_fields_from(self.body())
        provisioning.scim_group_replace(client=request.user, group=group, fields=fields, remote_addr=self.remote_addr())
        return self.scim(GroupRepresentation(self)(_group_get(request, pk)))

    def patch(self, request, pk):
        group = _group_get(request, pk)
        add, remove = set(), set()
        attributes = {"displayName": group.display_name, "externalId": group.external_id}
        members_replaced = None
        current = {u.pk for u in group.members.all()}
        for operation in _operations(self.body()):
            kind, ids, changes = _group_operation(operation)
            attributes.update(changes)
            if kind == "add":
                add |= ids
                remove -= ids
            elif kind == "remove":
                remove |= ids
                add -= ids
            elif kind == "remove_all":
                add, remove = set(), set(current)
            elif kind == "replace":
                members_replaced = ids
                add, remove = set(ids), set(current) - set(ids)
        fields = provisioning.group_fields_from(attributes)
        if fields.display_name != group.display_name or fields.external_id != group.external_id:
            provisioning.scim_group_replace(client=request.user, group=group, fields=fields,
                                            remote_addr=self.remote_addr())
        if add or remove or members_replaced is not None:
            provisioning.scim_group_members_change(client=request.user, group=group, add=add, remove=remove,
                                                   remote_addr=self.remote_addr())
        if request.query_params.get("attributes") or request.query_params.get("excludedAttributes"):
            return self.scim(GroupRepresentation(self, with_members=not _members_excluded(request))(
                _group_get(request, pk)))
        return Response(status=204)

    def delete(self, request, pk):
        provisioning.scim_group_delete(client=request.user, group=_group_get(request, pk), remote_addr=self.remote_addr())
        return Response(status=204)


def _member_path_ids(path: str) -> set[int] | None:
    """``members[value eq "42"]`` (any case, optional ``or``s of the same) as ``{42}``; None if not that form."""
    inner = path[len("members["):-1] if path.lower().startswith("members[") and path.endswith("]") else None
    if inner is None:
        return None
    try:
        q = scim_filter_q(inner, {"value": Field("pk", "id")})
    except FilterError as exc:
        raise invalid(f"path: {exc}", "invalidPath") from None
    return set(provisioning.scim_users().filter(q).values_list("pk", flat=True)) | _literal_ids(q)


def _literal_ids(q) -> set[int]:
    ids = set()
    for child in q.children:
        if isinstance(child, tuple) and child[0] == "pk":
            ids.add(int(child[1]))
        elif hasattr(child, "children"):
            ids |= _literal_ids(child)
    return ids


def _group_operation(operation: dict) -> tuple[str, set[int], dict]:
    """One PATCH operation on a group as ``(kind, member ids, attribute changes)``; kind is add,
    remove, remove_all, replace (the members) or "" (attributes only)."""
    op, path, value = operation["op"], operation["path"], operation["value"]
    if path.lower().startswith(GROUP_SCHEMA.lower() + ":"):
        path = path[len(GROUP_SCHEMA) + 1:]
    lowered = path.lower()
    if not path:
        if not isinstance(value, dict):
            raise invalid("A PATCH without a path needs an object of attributes as its value.")
        changes, kind, ids = {}, "", set()
        for key, item in value.items():
            if key.lower() == "members":
                ids = set(provisioning.member_ids_from(item))
                kind = "replace" if op == "replace" else "add"
            elif key.lower() in ("displayname", "externalid"):
                changes["displayName" if key.lower() == "displayname" else "externalId"] = item
            else:
                raise invalid(f"'{key}' is no attribute of a Group the catalog keeps.", "invalidPath")
        return kind, ids, changes
    if lowered == "members":
        if op == "remove":
            if value in (None, [], ""):
                return "remove_all", set(), {}
            return "remove", _member_values(value), {}
        return op, set(provisioning.member_ids_from(value)), {}
    ids = _member_path_ids(path)
    if ids is not None:
        if op != "remove":
            raise invalid(f"'{path}': only remove takes a member filter.", "invalidPath")
        return "remove", ids, {}
    if lowered in ("displayname", "externalid"):
        if op == "remove":
            if lowered == "displayname":
                raise invalid("'displayName' cannot be removed.", "mutability")
            value = ""
        return "", set(), {"displayName" if lowered == "displayname" else "externalId": value}
    raise invalid(f"The path '{path}' names no attribute of a Group the catalog keeps.", "invalidPath")


def _member_values(value) -> set[int]:
    """The ids of a remove's value; an id no user has removes nothing (it is not a member)."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise invalid("'members' must be a list of objects with a value (a user id).")
    ids = set()
    for member in value:
        try:
            ids.add(int(member.get("value")))
        except (TypeError, ValueError):
            raise invalid(f"'members.value' {str(member.get('value'))[:40]!r} is not a user id.") from None
    return ids


# Discovery -----------------------------------------------------------------------------------


class ServiceProviderConfigApi(ScimApi):
    def get(self, request):
        return self.scim({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": True},
            "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": True, "maxResults": MAX_COUNT},
            "changePassword": {"supported": False},
            "sort": {"supported": False},
            "etag": {"supported": False},
            "authenticationSchemes": [{
                "type": "oauthbearertoken", "name": "Bearer token",
                "description": "A token from `manage.py scim_token NAME`, sent as `Authorization: Bearer <token>`.",
                "primary": True,
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": self.location("ServiceProviderConfig", "")[:-1]},
        })


def _attribute(name, kind="string", *, required=False, multi=False, mutability="readWrite", unique="none",
               sub=None, case_exact=False, returned="default", description=""):
    attribute = {"name": name, "type": kind, "multiValued": multi, "description": description or name,
                 "required": required, "caseExact": case_exact, "mutability": mutability, "returned": returned,
                 "uniqueness": unique}
    if sub:
        attribute["subAttributes"] = sub
    return attribute


SCHEMAS = [
    {"id": USER_SCHEMA, "name": "User", "description": "A person of the catalog.", "attributes": [
        _attribute("userName", required=True, unique="server", description="Unique sign-in name."),
        _attribute("name", "complex", sub=[_attribute("givenName"), _attribute("familyName"),
                                           _attribute("formatted", mutability="readOnly")]),
        _attribute("displayName", mutability="readOnly"),
        _attribute("emails", "complex", multi=True, sub=[_attribute("value"), _attribute("type"),
                                                         _attribute("primary", "boolean")]),
        _attribute("active", "boolean"),
        _attribute("groups", "complex", multi=True, mutability="readOnly",
                   sub=[_attribute("value", mutability="readOnly"), _attribute("display", mutability="readOnly"),
                        _attribute("$ref", "reference", mutability="readOnly")]),
    ]},
    {"id": GROUP_SCHEMA, "name": "Group", "description": "A directory group; mapped groups give company roles.",
     "attributes": [
         _attribute("displayName", required=True, unique="server"),
         _attribute("members", "complex", multi=True,
                    sub=[_attribute("value", mutability="immutable"), _attribute("display", mutability="readOnly"),
                         _attribute("type", mutability="immutable"),
                         _attribute("$ref", "reference", mutability="immutable")]),
     ]},
]


class SchemasApi(ScimApi):
    def get(self, request):
        resources = [{**schema, "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
                      "meta": {"resourceType": "Schema", "location": self.location("Schemas", schema["id"])}}
                     for schema in SCHEMAS]
        return self.scim({"schemas": [LIST_SCHEMA], "totalResults": len(resources), "startIndex": 1,
                          "itemsPerPage": len(resources), "Resources": resources})


class SchemaApi(ScimApi):
    def get(self, request, schema_id):
        for schema in SCHEMAS:
            if schema["id"] == schema_id:
                return self.scim({**schema, "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
                                  "meta": {"resourceType": "Schema", "location": self.location("Schemas", schema_id)}})
        raise Http404


RESOURCE_TYPES = [("User", "/Users", USER_SCHEMA), ("Group", "/Groups", GROUP_SCHEMA)]


def _resource_type(view, name, endpoint, schema) -> dict:
    return {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": name, "name": name,
            "endpoint": endpoint, "description": name, "schema": schema, "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": view.location("ResourceTypes", name)}}


class ResourceTypesApi(ScimApi):
    def get(self, request):
        resources = [_resource_type(self, *item) for item in RESOURCE_TYPES]
        return self.scim({"schemas": [LIST_SCHEMA], "totalResults": len(resources), "startIndex": 1,
                          "itemsPerPage": len(resources), "Resources": resources})


class ResourceTypeApi(ScimApi):
    def get(self, request, name):
        for item in RESOURCE_TYPES:
            if item[0] == name:
                return self.scim(_resource_type(self, *item))
        raise Http404
