"""Group-to-role mappings edited in the admin: each change re-evaluates every user the directory
manages at once and is audited in the same transaction."""

from django.db import transaction

from access.audit import audit_record
from identity.directory import directory_roles_apply_all
from identity.models import GroupRoleMapping


@transaction.atomic
def group_role_mapping_save(*, mapping: GroupRoleMapping, actor, remote_addr: str = "") -> GroupRoleMapping:
    """Create or change a mapping, then re-apply everyone's directory roles."""
    created = mapping.pk is None
    mapping.full_clean()
    mapping.save()
    audit_record(actor=actor, action="identity.mapping_changed", obj=mapping, remote_addr=remote_addr,
                 details={"group": mapping.group_name, "role": mapping.role.slug,
                          "change": "added" if created else "changed"})
    directory_roles_apply_all(actor=actor, remote_addr=remote_addr, via="mapping")
    return mapping


@transaction.atomic
def group_role_mappings_delete(*, mappings, actor, remote_addr: str = "") -> int:
    """Remove mappings (one or a selection), then re-apply everyone's directory roles."""
    mappings = list(mappings.select_related("role")) if hasattr(mappings, "select_related") else list(mappings)
    for mapping in mappings:
        audit_record(actor=actor, action="identity.mapping_changed", obj=mapping, remote_addr=remote_addr,
                     details={"group": mapping.group_name, "role": mapping.role.slug, "change": "removed"})
    GroupRoleMapping.objects.filter(pk__in=[m.pk for m in mappings]).delete()
    directory_roles_apply_all(actor=actor, remote_addr=remote_addr, via="mapping")
    return len(mappings)
