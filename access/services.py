from django.contrib.auth.models import Group
from django.db import transaction

from access.models import Role, RolePermission, User
from access.roles import COMPANY_ROLES, ENVIRONMENTS, TIERS, default_cell
from access.service_tokens import service_token_create
from catalog.errors import ApplicationError


def role_ensure_defaults() -> list[Role]:
    """Create (or refresh) the built-in company roles and their groups. Idempotent."""
    roles = []
    for slug, name, can_register, can_manage_stores in COMPANY_ROLES:
        group, _ = Group.objects.get_or_create(name=name)
        role, _ = Role.objects.update_or_create(
            slug=slug,
            defaults={
                "name": name,
                "group": group,
                "can_register": can_register,
                "can_manage_stores": can_manage_stores,
            },
        )
        roles.append(role)
        _matrix_row_ensure(role)
    return roles


def _matrix_row_ensure(role: Role) -> None:
    """The role's matrix cells, with defaults where missing (an admin's edits are kept)."""
    present = set(RolePermission.objects.filter(role=role).values_list("environment", "sensitivity"))
    RolePermission.objects.bulk_create([
        RolePermission(role=role, environment=environment, sensitivity=tier, **default_cell(role.slug, environment, tier))
        for environment in ENVIRONMENTS for tier in TIERS if (environment, tier) not in present
    ])


def user_role_assign(*, user: User, role: Role) -> None:
    """Give a user a company role (by putting them in the role's group)."""
    user.groups.add(role.group)


@transaction.atomic
def service_account_create(*, name: str, role_slug: str) -> tuple[User, str]:
    """Create a service account holding one company role, and its first token."""
    role = Role.objects.filter(slug=role_slug).first()
    if role is None:
        known = ", ".join(Role.objects.order_by("slug").values_list("slug", flat=True))
        raise ApplicationError(f"Unknown role '{role_slug}'. Known roles: {known}.")
    if User.objects.filter(username=name).exists():
        raise ApplicationError(f"A user or service account named '{name}' already exists.")
    user = User(username=name, is_service_account=True)
    user.set_unusable_password()
    user.full_clean()
    user.save()
    user_role_assign(user=user, role=role)
    _, key = service_token_create(user=user)
    return user, key
