"""Browser pages for service accounts (admins): the accounts, an account's tokens, a new token
(shown once, on the page that made it) and one-click revoke. Writes go through
``access.service_tokens``; who may see them is ``policies.can_manage_service_accounts``."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.validators import MaxValueValidator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from access import policies, selectors, service_tokens
from access.audit import client_address
from catalog.errors import ApplicationError
from identity.stepup import step_up_required


class ServiceTokenCreateForm(forms.Form):
    expires_in_days = forms.IntegerField(label="Valid for (days)", min_value=1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["expires_in_days"]
        field.max_value = settings.SERVICE_TOKEN_TTL_DAYS
        field.initial = settings.SERVICE_TOKEN_TTL_DAYS
        field.widget.attrs.update({"min": 1, "max": settings.SERVICE_TOKEN_TTL_DAYS})
        field.validators.append(MaxValueValidator(settings.SERVICE_TOKEN_TTL_DAYS))
        field.help_text = f"At most {settings.SERVICE_TOKEN_TTL_DAYS} days (SERVICE_TOKEN_TTL_DAYS)."


def _account(request, pk):
    return get_object_or_404(selectors.service_account_list(user=request.user), pk=pk)


@login_required
def service_account_list(request):
    if not policies.can_manage_service_accounts(request.user):
        raise PermissionDenied("Only admins manage service accounts.")
    accounts = selectors.service_account_list(user=request.user)
    return render(request, "access/service_account_list.html", {"accounts": accounts})


def _detail(request, account, *, form=None, new_key=None, status=200):
    now = timezone.now()
    tokens = list(selectors.service_token_list(user=request.user, account=account))
    for token in tokens:
        token.current_state = token.state(now)
    return render(request, "access/service_account_detail.html", {
        "account": account, "tokens": tokens, "form": form or ServiceTokenCreateForm(), "new_key": new_key,
        "roles": [group.company_role for group in account.groups.all() if hasattr(group, "company_role")],
    }, status=status)


@login_required
def service_account_detail(request, pk):
    return _detail(request, _account(request, pk))


@login_required
@require_http_methods(["POST"])
@step_up_required
def service_token_create(request, pk):
    account = _account(request, pk)
    form = ServiceTokenCreateForm(request.POST)
    if form.is_valid():
        try:
            token, key = service_tokens.service_token_create(
                user=account, actor=request.user, days=form.cleaned_data["expires_in_days"],
                remote_addr=client_address(request),
            )
        except ApplicationError as error:
            form.add_error("expires_in_days", error.message)
        else:
            # The key is on this answer only (never stored, never in a redirect or a message).
            response = _detail(request, account, new_key={"token": token, "key": key})
            response["Cache-Control"] = "no-store"
            return response
    return _detail(request, account, form=form, status=400)


@login_required
@require_http_methods(["POST"])
@step_up_required
def service_token_revoke(request, pk, token_pk):
    account = _account(request, pk)
    token = get_object_or_404(selectors.service_token_list(user=request.user, account=account), pk=token_pk)
    service_tokens.service_token_revoke(token=token, actor=request.user, remote_addr=client_address(request))
    messages.success(request, f"Revoked the token {token.prefix}…; it is refused from now on.")
    return redirect("access:service-account-detail", pk=account.pk)
