from access import policies


def principal(request):
    """What the signed-in user may do, for templates to show or hide actions."""
    user = getattr(request, "user", None)
    return {
        "can_register_datasets": policies.can_register_datasets(user),
        "can_manage_stores": policies.can_manage_stores(user),
        "can_read_audit": policies.can_read_audit(user),
        "can_work_alerts": policies.can_work_alerts(user),
        "can_manage_service_accounts": policies.can_manage_service_accounts(user),
    }
