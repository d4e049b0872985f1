"""Every permission decision of the catalog, in one place.

The browser views, the API and (later) the workers all ask these functions; none of them
decides on its own. Roles are read once per request and cached on the user object.
"""

from django.db.models import F

from access.models import Role, RolePermission
from catalog.vocabulary import Sensitivity

# Security engineers run the access review of every dataset at or above this tier.
REVIEWED_BY_SECURITY_FROM = Sensitivity.SENSITIVE


def is_owner(user, dataset) -> bool:
    from access import decisions  # decisions reads the matrix, which imports these models

    return decisions.is_owner(user, dataset)


def is_steward(user, dataset) -> bool:
    """An owner of the dataset, or a steward: a user or a member of a group holding the
    ``catalog.steward_dataset`` object permission (django-guardian) on it."""
    from access import decisions

    return decisions.is_steward(user, dataset)


def user_roles(user) -> list[Role]:
    if not getattr(user, "is_authenticated", False):
        return []
    if getattr(user, "_catalog_roles", None) is None:
        # One query for the roles and their role-matrix cells (the access decisions need both).
        user_roles_prime([user])
    return user._catalog_roles


def user_roles_prime(users) -> None:
    """Load the roles and role-matrix cells of many users in one query, as ``user_roles`` would one
    by one (log ingestion decides for every user of a batch): each role a user holds, joined to its
    cells if it has any, so a role without cells (registering, stores) counts beside roles with them."""
    pending = [user for user in users if getattr(user, "_catalog_roles", None) is None and getattr(user, "pk", None)]
    if not pending:
        return
    by_user: dict[int, list] = {user.pk: [] for user in pending}
    roles_by_user: dict[int, dict] = {user.pk: {} for user in pending}
    cell_fields = [field.attname for field in RolePermission._meta.concrete_fields if field.attname != "role_id"]
    rows = Role.objects.filter(group__user__in=pending).annotate(
        holder_id=F("group__user"), **{f"cell_{name}": F(f"permissions__{name}") for name in cell_fields})
    for row in rows:  # a row per (holder, role, cell), the cell's fields NULL for a role without cells
        role = roles_by_user[row.holder_id].setdefault(row.pk, row)
        if row.cell_id is not None:
            cell = RolePermission(role_id=role.pk, **{name: getattr(row, f"cell_{name}") for name in cell_fields})
            cell._state.adding, cell._state.db = False, row._state.db
            cell.role = role
            by_user[row.holder_id].append(cell)
    for user in pending:
        user._catalog_roles = sorted(roles_by_user[user.pk].values(), key=lambda role: role.name)
        user._matrix_cells = by_user[user.pk]


def can_read_metadata(user) -> bool:
    """Any signed-in person or service account reads catalog metadata (for now)."""
    return bool(getattr(user, "is_authenticated", False) and user.is_active)


def can_register_datasets(user) -> bool:
    """May register new datasets and edit any dataset (registrar roles and superusers)."""
    if not can_read_metadata(user):
        return False
    return user.is_superuser or any(role.can_register for role in user_roles(user))


def can_edit_dataset(user, dataset) -> bool:
    """Registrars edit every dataset; owners and stewards edit theirs (and decide its
    classification suggestions)."""
    if can_register_datasets(user):
        return True
    if not can_read_metadata(user) or dataset is None:
        return False
    return is_steward(user, dataset)


def can_change_stewards(user, dataset) -> bool:
    """The dataset's owners, registrars and admins name its stewards (a steward does not name others)."""
    if not can_read_metadata(user) or getattr(user, "is_service_account", False):
        return False
    return can_register_datasets(user) or is_owner(user, dataset)


def can_change_owners(user, dataset) -> bool:
    """Owners, registrars and admins may propose other owners; stewards may not."""
    if not can_read_metadata(user):
        return False
    return can_register_datasets(user) or is_owner(user, dataset)


def can_review_proposal(user, proposal) -> bool:
    """Reviewers of a change to decision inputs: never the proposer or a service account; admins and
    security engineers; for a dataset, also its owners and stewards of the time it was proposed
    (``proposal.reviewers``: not those the proposer named since, or before, to approve it)."""
    if not can_read_metadata(user) or getattr(user, "is_service_account", False) or proposal.proposer_id == user.pk:
        return False
    if user.is_superuser or _is_security_engineer(user):
        return True
    # The dataset's owners and stewards as they were when it was proposed, not named by the proposer.
    # (and still an owner or steward now: a removed steward no longer reviews).
    return (bool(proposal.dataset_id) and proposal.reviewers.filter(pk=user.pk).exists()
            and is_steward(user, proposal.dataset))


def can_manage_stores(user) -> bool:
    if not can_read_metadata(user):
        return False
    return user.is_superuser or any(role.can_manage_stores for role in user_roles(user))


def can_emit_lineage(user) -> bool:
    """May send OpenLineage events: they can create datasets, so registrars only."""
    return can_register_datasets(user)


def can_send_lineage_for(user, sent_by_id) -> bool:
    """May send events for a job or run first sent by ``sent_by_id``: the account that sent it
    first, or an admin. Another pipeline may not rewrite a job's SQL or type, end or fail a run, or
    nest its runs under one (an OpenLineage run id or job name is no secret). A job or run sent
    before senders were kept (``None``) is claimed by its next sender."""
    return user.is_superuser or sent_by_id is None or sent_by_id == getattr(user, "pk", None)


def _is_security_engineer(user) -> bool:
    return any(role.slug == "security_engineer" for role in user_roles(user))


def can_review_request(user, request) -> bool:
    """Approvers: the dataset's owners and stewards, admins, and security engineers where the
    request touches Restricted data or the matrix asks for a security approval. Never the requester."""
    if not can_read_metadata(user) or getattr(user, "is_service_account", False) or request.requester_id == user.pk:
        return False
    if user.is_superuser or is_steward(user, request.dataset):
        return True
    return (request.sensitivity >= 3 or request.security_approval_required) and _is_security_engineer(user)


def can_review_break_glass(user, grant) -> bool:
    """The after-the-fact review of a break-glass grant: whoever may review its request, and every
    security engineer and admin whatever the data's tier (break-glass skipped their approval).
    Never the grant's holder or a service account."""
    if not can_read_metadata(user) or getattr(user, "is_service_account", False) or grant.user_id == user.pk:
        return False
    return _is_security_engineer(user) or can_review_request(user, grant.request)


def can_revoke_grant(user, grant) -> bool:
    """The grant's holder, the dataset's owners and stewards, security engineers and admins end a grant early."""
    if not can_read_metadata(user):
        return False
    return (grant.user_id == user.pk or user.is_superuser or _is_security_engineer(user)
            or is_steward(user, grant.dataset))


def can_retry_enforcement(user, grant) -> bool:
    """Approvers of the grant's dataset (never its holder), security engineers and admins start a
    failed warehouse change over."""
    return can_read_audit(user) or can_review_request(user, grant.request)


def can_edit_role_matrix(user) -> bool:
    return can_read_metadata(user) and user.is_superuser


def can_read_audit(user) -> bool:
    """Security engineers and admins read the audit trail."""
    return can_read_metadata(user) and (user.is_superuser or _is_security_engineer(user))


def can_work_alerts(user) -> bool:
    """Security engineers and admins read, acknowledge, assign, resolve and snooze monitoring
    alerts (and are the ones alerts can be assigned to); the same people who read the audit trail."""
    return can_read_audit(user) and not getattr(user, "is_service_account", False)


def can_work_alert(user, alert) -> bool:
    """Acknowledge, assign, resolve, snooze or reopen one alert: whoever works alerts, except the
    people it is about (``Alert.concerned_user_ids``): a security engineer must not close, snooze
    or take the alert about their own reads, break-glass or approvals. Also who it can be assigned to."""
    return can_work_alerts(user) and user.pk not in alert.concerned_user_ids()


def can_manage_webhooks(user) -> bool:
    """Security engineers and admins (people, never a service account) add, change, test and remove
    outgoing webhook endpoints and read their deliveries: an endpoint receives alerts and catalog
    events, so it is a way out of the catalog."""
    return can_work_alerts(user)


def can_change_webhook(user, endpoint) -> bool:
    """Read the deliveries of, change, test and remove one endpoint: its creator, or an admin. An
    endpoint acts with its creator's visibility (its payloads name the datasets its creator may
    see), so another security engineer may not re-point it, nor read what it was sent."""
    if not can_manage_webhooks(user):
        return False
    return user.is_superuser or (endpoint.created_by_id is not None and endpoint.created_by_id == user.pk)


def classifies_every_dataset(user) -> bool:
    """Whose classification queue lists every unclassified dataset they may see: security engineers
    and admins. Everyone else is asked to classify the unclassified datasets they own or steward."""
    return can_read_metadata(user) and (user.is_superuser or _is_security_engineer(user))


def can_read_grants_everywhere(user) -> bool:
    """Security engineers and admins oversee the grants of every dataset (the grants list, its export)."""
    return can_read_audit(user)


def can_review_dataset_access(user, dataset) -> bool:
    """Owners and stewards (and admins) run the periodic access review of their dataset; security
    engineers that of every dataset at or above Sensitive (``selectors.access_review_candidates``
    says the same in SQL)."""
    if not can_read_metadata(user):
        return False
    if user.is_superuser or is_steward(user, dataset):
        return True
    from access import decisions

    return _is_security_engineer(user) and decisions.dataset_tier(dataset) >= REVIEWED_BY_SECURITY_FROM


def can_manage_enforcement(user, dataset) -> bool:
    """See (and have applied) how the dataset is enforced in its store: the statements, the masking
    and the grants table. Security engineers, admins and the dataset's owners; the caller has already
    checked that the user sees the dataset."""
    if not can_read_metadata(user):
        return False
    return user.is_superuser or _is_security_engineer(user) or is_owner(user, dataset)


def can_manage_service_accounts(user) -> bool:
    """See service accounts and their tokens, make new tokens and revoke them: admins (people,
    never a service account, so a leaked token cannot mint itself a successor)."""
    return bool(getattr(user, "is_superuser", False)) and not getattr(user, "is_service_account", False)


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
    _matrix_cells: list = []

    def __str__(self) -> str:
        return "system"


SYSTEM = SystemPrincipal()
