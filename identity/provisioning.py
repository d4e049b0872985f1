"""SCIM provisioning: the users and groups a directory's provisioning client creates, changes and
removes, each change audited with the client as actor (``scim:<token name>``).

A provisioned user is an ``access.User`` with a ``DirectoryAccount(source=scim)``; their company
roles come from their directory groups (``identity.directory``). Deactivating a user
(``active: false`` or a DELETE) ends everything they hold (``access.offboarding.user_access_end``);
a user who leaves a group loses its role and what only that role let them ask for
(``user_access_trim``). Nothing else about a user is deleted: datasets, ownership and audit history stay."""

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from access.audit import audit_record
from access.models import User
from access.offboarding import user_access_end, user_access_trim, users_with_open_access
from identity.directory import directory_roles_apply, directory_roles_apply_many
from identity.models import DirectoryAccount, DirectoryGroup, ScimProvisioning


class ScimError(Exception):
    """A SCIM error response (RFC 7644 §3.12): ``status``, optional ``scim_type`` and a ``detail``
    that names the attribute at fault."""

    def __init__(self, status: int, detail: str, scim_type: str = ""):
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type


def invalid(detail: str, scim_type: str = "invalidValue") -> ScimError:
    return ScimError(400, detail, scim_type)


@dataclass
class UserFields:
    """What the catalog keeps of a SCIM User."""

    user_name: str
    external_id: str = ""
    given_name: str = ""
    family_name: str = ""
    email: str = ""
    active: bool = True


@dataclass
class GroupFields:
    display_name: str
    external_id: str = ""
    member_ids: list[int] | None = field(default=None)  # None: leave the members as they are


def _text(value, name: str, max_length: int, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise invalid(f"'{name}' must be a string.")
    value = value.strip()
    if required and not value:
        raise invalid(f"'{name}' is required.")
    if len(value) > max_length:
        raise invalid(f"'{name}' is longer than {max_length} characters.")
    if any(ord(c) < 32 for c in value):
        raise invalid(f"'{name}' has control characters.")
    return value


def boolean(value, name: str) -> bool:
    """SCIM booleans; Microsoft Entra sends ``"False"`` as a string in PATCH, so those count too."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise invalid(f"'{name}' must be true or false.")


def user_fields_from(resource) -> UserFields:
    """Read a SCIM User resource (a POST or PUT body) into ``UserFields``; a 400 names the attribute."""
    if not isinstance(resource, dict):
        raise invalid("The body must be a SCIM User object.", "invalidSyntax")
    resource = {key.lower(): value for key, value in resource.items()}
    name = resource.get("name") or {}
    if not isinstance(name, dict):
        raise invalid("'name' must be an object with givenName and familyName.")
    name = {key.lower(): value for key, value in name.items()}
    emails = resource.get("emails") or []
    if not isinstance(emails, list) or not all(isinstance(e, dict) for e in emails):
        raise invalid("'emails' must be a list of objects with a value.")
    chosen = next((e for e in emails if e.get("primary") is True), emails[0] if emails else {})
    email = _text(chosen.get("value"), "emails.value", 254)
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise invalid(f"'emails.value' is not an e-mail address: {email[:60]!r}.") from None
    user_name = _text(resource.get("username"), "userName", 150, required=True)
    try:
        User.username_validator(user_name)
    except ValidationError:
        raise invalid("'userName' may hold letters, digits and @/./+/-/_ only.") from None
    return UserFields(
        user_name=user_name,
        external_id=_text(resource.get("externalid"), "externalId", 255),
        given_name=_text(name.get("givenname"), "name.givenName", 150),
        family_name=_text(name.get("familyname"), "name.familyName", 150),
        email=email,
        active=boolean(resource.get("active", True), "active"),
    )


def _user_name_taken(user_name: str, exclude_pk=None) -> bool:
    return User.objects.filter(username__iexact=user_name).exclude(pk=exclude_pk).exists()


def scim_users():
    """The users SCIM sees: those the directory manages, less the deprovisioned ones."""
    return (User.objects.filter(directory_account__isnull=False, is_service_account=False)
            .exclude(directory_account__scim__deprovisioned_at__isnull=False))


def scim_user_create(*, client, fields: UserFields, remote_addr: str = "") -> User:
    """Provision a user. A user the same directory deprovisioned before comes back (same row, so
    their history stays) instead of a clash; any other holder of the userName is a 409."""
    with transaction.atomic():
        returning = (User.objects.select_for_update().filter(
            username__iexact=fields.user_name, directory_account__source=DirectoryAccount.Source.SCIM,
            directory_account__scim__deprovisioned_at__isnull=False).first())
        if returning is None and _user_name_taken(fields.user_name):
            raise ScimError(409, f"userName '{fields.user_name}' is already taken.", "uniqueness")
        try:
            with transaction.atomic():
                if returning is None:
                    user = User.objects.create(username=fields.user_name)
                    account = DirectoryAccount.objects.create(user=user, source=DirectoryAccount.Source.SCIM,
                                                              external_id=fields.external_id)
                    ScimProvisioning.objects.create(account=account)
                else:
                    user = returning
                    ScimProvisioning.objects.filter(account__user=user).update(deprovisioned_at=None)
        except IntegrityError:  # two at once
            raise ScimError(409, f"userName '{fields.user_name}' is already taken.", "uniqueness") from None
        user.set_unusable_password()  # people sign in through single sign-on
        _user_save(user, fields)
        audit_record(actor=client, action="identity.user_provisioned", obj=user, remote_addr=remote_addr,
                     details={"client": client.name, "user": user.username, "external_id": fields.external_id,
                              "active": user.is_active, "returning": returning is not None})
    if not user.is_active:
        user_access_end(user=user, actor=client, reason="Provisioned inactive by the directory.", remote_addr=remote_addr)
    return user


def _user_save(user: User, fields: UserFields) -> None:
    user.username, user.first_name, user.last_name = fields.user_name, fields.given_name, fields.family_name
    user.email, user.is_active = fields.email, fields.active
    user.save()
    DirectoryAccount.objects.filter(user=user).update(external_id=fields.external_id, updated_at=timezone.now())


def scim_user_replace(*, client, user: User, fields: UserFields, remote_addr: str = "") -> User:
    """Replace a provisioned user's attributes (PUT, and PATCH once its operations are applied).
    Turning ``active`` off ends everything they hold at once."""
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        if _user_name_taken(fields.user_name, exclude_pk=user.pk):
            raise ScimError(409, f"userName '{fields.user_name}' is already taken.", "uniqueness")
        was_active = user.is_active
        before = {"userName": user.username, "active": user.is_active}
        _user_save(user, fields)
        audit_record(actor=client, action="identity.user_updated", obj=user, remote_addr=remote_addr,
                     details={"client": client.name, "user": user.username, "before": before,
                              "after": {"userName": user.username, "active": user.is_active}})
    if was_active and not user.is_active:
        user_access_end(user=user, actor=client, reason="Deactivated by the directory.", remote_addr=remote_addr)
    return user


def scim_user_deprovision(*, client, user: User, remote_addr: str = "") -> None:
    """A SCIM DELETE: the user is deactivated (everything they hold ends) and marked deprovisioned,
    so SCIM no longer shows them. Nothing else is deleted."""
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        user.is_active = False
        user.save(update_fields=["is_active"])
        ScimProvisioning.objects.update_or_create(account=user.directory_account,
                                                  defaults={"deprovisioned_at": timezone.now()})
        groups = list(user.directory_groups.values_list("pk", flat=True))
        user.directory_groups.clear()
        audit_record(actor=client, action="identity.user_deprovisioned", obj=user, remote_addr=remote_addr,
                     details={"client": client.name, "user": user.username, "groups_left": groups})
    user_access_end(user=user, actor=client, reason="Deprovisioned by the directory.", remote_addr=remote_addr)
    directory_roles_apply(user, actor=client, remote_addr=remote_addr, via="scim")


# Groups --------------------------------------------------------------------------------------


def group_fields_from(resource, *, members_required: bool = False) -> GroupFields:
    if not isinstance(resource, dict):
        raise invalid("The body must be a SCIM Group object.", "invalidSyntax")
    resource = {key.lower(): value for key, value in resource.items()}
    members = resource.get("members")
    return GroupFields(
        display_name=_text(resource.get("displayname"), "displayName", 255, required=True),
        external_id=_text(resource.get("externalid"), "externalId", 255),
        member_ids=member_ids_from(members) if members is not None or members_required else None,
    )


def member_ids_from(members) -> list[int]:
    """The user ids of a ``members`` value (a list of ``{"value": id}``); each must be a user SCIM sees."""
    if members is None:
        return []
    if isinstance(members, dict):
        members = [members]
    if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
        raise invalid("'members' must be a list of objects with a value (a user id).")
    ids = []
    for member in members:
        value = member.get("value")
        try:
            ids.append(int(value))
        except (TypeError, ValueError):
            raise invalid(f"'members.value' {str(value)[:40]!r} is not a user id.") from None
    known = set(scim_users().filter(pk__in=ids).values_list("pk", flat=True))
    unknown = [str(i) for i in ids if i not in known]
    if unknown:
        raise invalid(f"'members.value' names no provisioned user: {', '.join(unknown[:10])}.")
    return list(dict.fromkeys(ids))


def _display_name_taken(name: str, exclude_pk=None) -> bool:
    return DirectoryGroup.objects.filter(display_name__iexact=name).exclude(pk=exclude_pk).exists()


def _members_changed(group: DirectoryGroup, *, client, added, removed, remote_addr: str) -> None:
    """Audit a membership change and give each affected user exactly the roles of their groups;
    who lost a role loses what only that role let them ask for."""
    if added or removed:
        audit_record(actor=client, action="identity.group_members_changed", obj=group, remote_addr=remote_addr,
                     details={"client": client.name, "group": group.display_name,
                              "added": sorted(added), "removed": sorted(removed)})
    _roles_apply(set(added) | set(removed), client=client, remote_addr=remote_addr)


def _roles_apply(user_ids, *, client, remote_addr: str) -> None:
    changes = directory_roles_apply_many(user_ids, actor=client, remote_addr=remote_addr, via="scim")
    lost_any = [user_id for user_id, (_, lost) in changes.items() if lost]
    for user in User.objects.filter(pk__in=users_with_open_access(lost_any)).order_by("pk"):
        lost = changes[user.pk][1]
        user_access_trim(user=user, actor=client, remote_addr=remote_addr,
                         reason=f"Lost the role{'s' if len(lost) > 1 else ''} {', '.join(sorted(lost))} "
                                "through a directory group change.")


def scim_group_create(*, client, fields: GroupFields, remote_addr: str = "") -> DirectoryGroup:
    with transaction.atomic():
        if _display_name_taken(fields.display_name):
            raise ScimError(409, f"displayName '{fields.display_name}' is already taken.", "uniqueness")
        try:
            with transaction.atomic():
                group = DirectoryGroup.objects.create(display_name=fields.display_name, external_id=fields.external_id)
        except IntegrityError:
            raise ScimError(409, f"displayName '{fields.display_name}' is already taken.", "uniqueness") from None
        members = fields.member_ids or []
        group.members.add(*members)
        audit_record(actor=client, action="identity.group_provisioned", obj=group, remote_addr=remote_addr,
                     details={"client": client.name, "group": group.display_name, "members": len(members)})
        _members_changed(group, client=client, added=members, removed=[], remote_addr=remote_addr)
    return group


def scim_group_replace(*, client, group: DirectoryGroup, fields: GroupFields, remote_addr: str = "") -> DirectoryGroup:
    """Replace a group's name, externalId and (when given) its members; the roles follow."""
    with transaction.atomic():
        group = DirectoryGroup.objects.select_for_update().get(pk=group.pk)
        if _display_name_taken(fields.display_name, exclude_pk=group.pk):
            raise ScimError(409, f"displayName '{fields.display_name}' is already taken.", "uniqueness")
        renamed = group.display_name != fields.display_name
        before = group.display_name
        group.display_name, group.external_id = fields.display_name, fields.external_id
        group.save()
        current = set(group.members.values_list("pk", flat=True))
        added = removed = set()
        if fields.member_ids is not None:
            wanted = set(fields.member_ids)
            added, removed = wanted - current, current - wanted
            group.members.remove(*removed)
            group.members.add(*added)
        if renamed:
            audit_record(actor=client, action="identity.group_renamed", obj=group, remote_addr=remote_addr,
                         details={"client": client.name, "before": before, "after": group.display_name})
        _members_changed(group, client=client, added=added, removed=removed, remote_addr=remote_addr)
        if renamed:  # a new name may map to other roles: every member is re-evaluated
            _roles_apply(current - removed - added, client=client, remote_addr=remote_addr)
    return group


def scim_group_members_change(*, client, group: DirectoryGroup, add=(), remove=(), remote_addr: str = "") -> None:
    """Add and remove members (a PATCH), audited, the roles following."""
    with transaction.atomic():
        group = DirectoryGroup.objects.select_for_update().get(pk=group.pk)
        current = set(group.members.values_list("pk", flat=True))
        added, removed = set(add) - current, set(remove) & current
        group.members.remove(*removed)
        group.members.add(*added)
        if added or removed:
            DirectoryGroup.objects.filter(pk=group.pk).update(updated_at=timezone.now())
        _members_changed(group, client=client, added=added, removed=removed, remote_addr=remote_addr)


def scim_group_delete(*, client, group: DirectoryGroup, remote_addr: str = "") -> None:
    """Delete a directory group; its members lose the roles it gave."""
    with transaction.atomic():
        group = DirectoryGroup.objects.select_for_update().get(pk=group.pk)
        members = set(group.members.values_list("pk", flat=True))
        audit_record(actor=client, action="identity.group_deleted", obj=group, remote_addr=remote_addr,
                     details={"client": client.name, "group": group.display_name, "members": len(members)})
        group.delete()
        _roles_apply(members, client=client, remote_addr=remote_addr)
