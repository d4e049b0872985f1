"""The demo (``make run``): a security engineer finds real alerts and real usage from the demo's
warehouse log (a burst of Restricted reads, a read after a grant ended, a break-glass not
reviewed), raised by the detectors from events recorded through monitoring ingestion."""

from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from access.models import User
from catalog.models import Dataset
from monitoring.models import AccessEvent, Alert, AlertStatus
from monitoring.selectors import dataset_usage


def test_the_demo_raises_the_three_alerts_of_its_story(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("load_demo")
    alerts = {alert.rule: alert for alert in Alert.objects.exclude(status=AlertStatus.RESOLVED).select_related("user")}
    assert alerts["volume_baseline"].user.username == "priya"
    assert alerts["read_after_grant_end"].user.username == "mia"
    assert alerts["break_glass_unreviewed"].user.username == "sofia"
    counts = (AccessEvent.objects.count(), Alert.objects.count())
    call_command("load_demo")  # idempotent: nothing recorded or raised twice
    assert (AccessEvent.objects.count(), Alert.objects.count()) == counts

    client = Client()
    client.force_login(User.objects.get(username="sam"))
    inbox = client.get(reverse("monitoring:alert-list"))
    assert inbox.status_code == 200
    shown = {alert.rule for alert in inbox.context["alerts"]}
    assert {"volume_baseline", "read_after_grant_end", "break_glass_unreviewed"} <= shown
    detail = client.get(reverse("monitoring:alert-detail", args=[alerts["read_after_grant_end"].pk]))
    assert "appdb.public.users" in detail.text and "mia_analytics" in detail.text


def test_the_demo_users_table_has_usage_from_the_log(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("load_demo")
    users = Dataset.objects.get(qualified_name="appdb.public.users")
    usage = dataset_usage(user=User.objects.get(username="sam"), dataset=users)
    assert usage["reads"] == AccessEvent.objects.filter(dataset=users).count() > 70
    assert {reader["user"] for reader in usage["topReaders"]} >= {"priya", "dave", "mia", "sofia"}
    assert {reader["allowedBy"] for reader in usage["restrictedReaders"]} >= {"grant #%d" % g for g in
                                                                             _priya_grants()}


def _priya_grants():
    from access.models import Grant

    return list(Grant.objects.filter(user__username="priya").values_list("pk", flat=True))
