"""Directory groups give company roles: the mapping from group names (``OIDC_GROUP_ROLES`` and
the admin's ``GroupRoleMapping`` rows) applied to users the directory manages.

A user the directory manages (a ``DirectoryAccount``) holds exactly the company roles their
directory groups map to: one in no mapped group holds none. Users the directory does not manage
(local accounts, the demo's) keep the roles an admin gave them."""

from django.conf import settings
from django.db import transaction

from access.models import Role

from identity.models import DirectoryAccount, DirectoryGroup, GroupRoleMapping


def settings_mapping() -> dict[str, set[str]]:
    """``OIDC_GROUP_ROLES`` as ``{group name (lower case): {role slug, ...}}``."""
    mapping: dict[str, set[str]] = {}
    for item in settings.OIDC_GROUP_ROLES:
        group, _, slug = item.partition("=")
        if group.strip() and slug.strip():
            mapping.setdefault(group.strip().lower(), set()).add(slug.strip())
    return mapping


def role_slugs_for_groups(group_names) -> set[str]:
    """The company role slugs the directory groups ``group_names`` map to (any case)."""
    names = {name.strip().lower() for name in group_names if name and name.strip()}
    if not names:
        return set()
    from_settings = settings_mapping()
    slugs = {slug for name in names for slug in from_settings.get(name, ())}
    for group_name, slug in GroupRoleMapping.objects.values_list("group_name", "role__slug"):
        if group_name.strip().lower() in names:
            slugs.add(slug)
    return slugs


def is_managed(user) -> bool:
    return DirectoryAccount.objects.filter(user_id=user.pk).exists()


@transaction.atomic
def directory_roles_apply(user, *, actor, remote_addr: str = "", via: str = "") -> tuple[set[str], set[str]]:
    """Make a managed user's company roles exactly those their directory groups map to; audited
    when anything changes. Returns ``(added, removed)`` role slugs (both empty for unmanaged users)."""
    from access.audit import audit_record

    if not is_managed(user):
        return set(), set()
    wanted = role_slugs_for_groups(user.directory_groups.values_list("display_name", flat=True))
    roles = {role.slug: role for role in Role.objects.select_related("group")}
    wanted &= set(roles)
    held = set(Role.objects.filter(group__user=user).values_list("slug", flat=True))
    added, removed = wanted - held, held - wanted
    for slug in added:
        user.groups.add(roles[slug].group)
    for slug in removed:
        user.groups.remove(roles[slug].group)
    if added or removed:
        audit_record(actor=actor, action="identity.roles_changed", obj=user, remote_addr=remote_addr,
                     details={"user": user.username, "added": sorted(added), "removed": sorted(removed),
                              "via": via})
    return added, removed


def directory_roles_apply_all(*, actor, remote_addr: str = "", via: str = "mapping") -> int:
    """Re-evaluate every managed user (after the mapping changed); returns how many changed."""
    from access.models import User

    ids = list(User.objects.filter(directory_account__isnull=False).order_by("pk").values_list("pk", flat=True))
    changed = 0
    for start in range(0, len(ids), 500):  # a constant number of queries per 500 users
        changed += len(directory_roles_apply_many(ids[start:start + 500], actor=actor, remote_addr=remote_addr, via=via))
    return changed


@transaction.atomic
def directory_roles_apply_many(user_ids, *, actor, remote_addr: str = "", via: str = "") -> dict[int, tuple[set[str], set[str]]]:
    """``directory_roles_apply`` for many users at once (a SCIM PATCH of a large group): the same
    rule, in a constant number of queries, one audit event per user whose roles changed.
    Returns ``{user id: (added, removed)}`` for the users whose roles changed."""
    from access.audit import audit_record_many
    from access.models import User

    managed = list(User.objects.filter(pk__in=user_ids, directory_account__isnull=False).order_by("pk"))
    if not managed:
        return {}
    ids = [user.pk for user in managed]
    groups_of: dict[int, set[str]] = {pk: set() for pk in ids}
    for user_id, name in DirectoryGroup.members.through.objects.filter(user_id__in=ids).values_list(
            "user_id", "directorygroup__display_name"):
        groups_of[user_id].add(name)
    roles = {role.slug: role for role in Role.objects.select_related("group")}
    by_group_id = {role.group_id: slug for slug, role in roles.items()}
    held: dict[int, set[str]] = {pk: set() for pk in ids}
    memberships = User.groups.through.objects.filter(user_id__in=ids, group_id__in=list(by_group_id))
    for user_id, group_id in memberships.values_list("user_id", "group_id"):
        held[user_id].add(by_group_id[group_id])
    wanted_for: dict[frozenset, set[str]] = {}
    changes, to_add, to_remove, events = {}, [], [], []
    for user in managed:
        names = frozenset(name.lower() for name in groups_of[user.pk])
        if names not in wanted_for:
            wanted_for[names] = role_slugs_for_groups(names) & set(roles)
        added, removed = wanted_for[names] - held[user.pk], held[user.pk] - wanted_for[names]
        if not (added or removed):
            continue
        changes[user.pk] = (added, removed)
        to_add += [User.groups.through(user_id=user.pk, group_id=roles[slug].group_id) for slug in added]
        to_remove += [(user.pk, roles[slug].group_id) for slug in removed]
        events.append({"actor": actor, "action": "identity.roles_changed", "obj": user, "remote_addr": remote_addr,
                       "details": {"user": user.username, "added": sorted(added), "removed": sorted(removed),
                                   "via": via}})
    User.groups.through.objects.bulk_create(to_add, ignore_conflicts=True)
    for group_id in {group_id for _, group_id in to_remove}:
        User.groups.through.objects.filter(group_id=group_id, user_id__in=[u for u, g in to_remove if g == group_id]).delete()
    audit_record_many(events)
    return changes
