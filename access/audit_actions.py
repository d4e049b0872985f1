"""Every action the audit trail records, by family: the one list the audit page's action filter is
built from (tests/access/test_audit_actions.py checks that the code records exactly these)."""

FAMILY_LABELS = {
    "request": "Access requests",
    "grant": "Grants",
    "break_glass": "Break-glass",
    "access_review": "Access reviews",
    "matrix": "Role matrix",
    "proposal": "Proposals",
    "dataset": "Datasets",
    "steward": "Stewards",
    "store": "Stores",
    "connection": "Connections",
    "metadata": "Restricted metadata views",
    "reconcile": "Warehouse reconciler",
    "enforcement": "Enforcement in stores (views, masking)",
    "audit": "Audit trail",
    "signin": "Sign-in",
    "identity": "Identity (sign-in, directory, SCIM)",
    "token": "Service tokens",
    "service_account": "Service accounts",
    "mfa": "Second factors",
    "user": "Users (admin)",
    "shipper_token": "Log shipper tokens",
    "alert": "Monitoring alerts",
    "webhook": "Outgoing webhooks",
}

AUDIT_ACTIONS = (
    "request.created", "request.reviewed", "request.approved", "request.denied", "request.cancelled",
    "request.expired", "request.rules_tightened",
    "grant.activated", "grant.scheduled", "grant.expired", "grant.revoked", "grant.applied", "grant.unapplied",
    "grant.apply_failed", "grant.unapply_failed", "grant.enforcement_retried", "grant.exported",
    "break_glass.activated", "break_glass.reviewed",
    "access_review.confirmed",
    "matrix.changed",
    "proposal.created", "proposal.reviewed", "proposal.applied", "proposal.rejected", "proposal.stale",
    "proposal.cancelled",
    "dataset.classified", "dataset.classification_changed", "dataset.owners_changed", "dataset.tags_changed",
    "steward.added", "steward.removed",
    "store.created", "store.changed",
    "connection.saved", "connection.removed", "connection.tested",
    "metadata.restricted_viewed",
    "reconcile.unexpected_privilege", "reconcile.drift",
    "enforcement.plan_applied", "enforcement.applied",
    "audit.exported", "audit.verified",
    "signin.failed", "signin.locked_out",
    "signin.succeeded", "identity.mapping_changed", "user.changed_in_admin",
    "identity.roles_changed",
    # SCIM provisioning (identity/provisioning.py, identity/scim_tokens.py) and what deactivation ends
    "identity.user_provisioned", "identity.user_updated", "identity.user_deprovisioned", "identity.group_provisioned",
    "identity.group_members_changed", "identity.group_renamed", "identity.group_deleted", "identity.scim_token_created",
    "identity.scim_token_revoked", "identity.access_ended", "request.approval_voided",
    "token.created", "token.revoked", "token.new_address",
    "service_account.created", "service_account.role_changed",
    "mfa.enrolled", "mfa.removed", "mfa.recovery_codes_generated", "mfa.verified", "mfa.verify_failed",
    # Log shippers' tokens (monitoring/shippers.py)
    "shipper_token.created", "shipper_token.revoked",
    # Monitoring alerts (monitoring/alerts.py)
    "alert.acknowledged", "alert.assigned", "alert.resolved", "alert.snoozed", "alert.reopened",
    # Outgoing webhook endpoints (monitoring/webhooks.py)
    "webhook.created", "webhook.changed", "webhook.removed",
)

# Details keys whose values are user ids (the audit page shows their usernames).
USER_ID_DETAILS = frozenset({"approvals"})


def audit_action_choices() -> list:
    """Grouped choices for a <select>: per family, the whole family (``grant``) then each action."""
    families: dict[str, list[str]] = {}
    for action in AUDIT_ACTIONS:
        families.setdefault(action.split(".", 1)[0], []).append(action)
    groups = []
    for family, actions in families.items():
        label = FAMILY_LABELS.get(family, family)
        groups.append((label, [(family, f"{family}.* (all {label.lower()})")] + [(a, a) for a in sorted(actions)]))
    return [("", "Any action"), *groups]
