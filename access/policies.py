"""Every permission decision of the catalog, in one place.

The browser views, the API and (later) the workers all ask these functions; none of them
decides on its own. Roles are read once per request and cached on the user object.
"""

from access.models import Role


def user_roles(user) -> list[Role]:
    if not getattr(user, "is_authenticated", False):
        return []
    cached = getattr(user, "_catalog_roles", None)
    if cached is None:
        cached = list(Role.objects.filter(group__user=user))
        user._catalog_roles = cached
    return cached


def can_read_metadata(user) -> bool:
    """Any signed-in person or service account reads catalog metadata (for now)."""
    return bool(getattr(user, "is_authenticated", False) and user.is_active)


def can_register_datasets(user) -> bool:
    """May register new datasets and edit any dataset (registrar roles and superusers)."""
    if not can_read_metadata(user):
        return False
    return user.is_superuser or any(role.can_register for role in user_roles(user))


def can_edit_dataset(user, dataset) -> bool:
    """Registrars edit every dataset; an owner (steward) edits their own."""
    if can_register_datasets(user):
        return True
    if not can_read_metadata(user) or dataset is None:
        return False
    owners = getattr(dataset, "owner_list", None)  # prefetched by the dataset selectors
    if owners is not None:
        return any(owner.pk == user.pk for owner in owners)
    return dataset.owners.filter(pk=user.pk).exists()


def can_manage_stores(user) -> bool:
    if not can_read_metadata(user):
        return False
    return user.is_superuser or any(role.can_manage_stores for role in user_roles(user))


def can_emit_lineage(user) -> bool:
    """May send OpenLineage events: they can create datasets, so registrars only."""
    return can_register_datasets(user)


class SystemPrincipal:
    """Who background jobs act as when no person asked for the work (a scheduled sync, a
    notification). It has an admin's rights (``is_superuser``); only code holds it, never a
    request, so no page or endpoint can act as it."""

    pk = None
    username = "system"
    is_authenticated = True
    is_active = True
    is_superuser = True
    is_service_account = True
    _catalog_roles: list = []

    def __str__(self) -> str:
        return "system"


SYSTEM = SystemPrincipal()
