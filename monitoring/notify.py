"""Where alerts go: mail to security engineers and admins, and the webhooks that asked for them.

``alert_notify`` receives ``monitoring.signals.alert_raised`` (sent after the detectors' batch
committed, when an alert opens or gets worse; connected in ``MonitoringConfig.ready``):

- mail, when the alert reaches ``MONITORING_ALERT_MAIL_MIN_SEVERITY``, to every active person with
  an e-mail address whom ``access.policies.can_work_alerts`` allows, one message each, naming only
  the datasets that person may see; the subject has the severity and the title, the body the
  summary, the suggested action and the alert's page; never a value read in a warehouse (alerts
  hold none);
- a webhook delivery for each active endpoint whose ``min_severity`` the alert reaches
  (``webhook_events.alert_webhooks_enqueue``), sent by a worker after commit.

A mail server or a receiver that is down costs the notification (logged), never the detectors.
"""

import logging

from django.conf import settings
from django.core.mail import send_mass_mail
from django.db.models import Q
from django.template.loader import render_to_string

from access.models import User
from access.policies import can_work_alerts
from catalog.selectors import dataset_visible
from monitoring.models import Alert, Severity

logger = logging.getLogger(__name__)


def alert_workers():
    """Who may work alerts and can be mailed: admins and security engineers, active, with an address."""
    candidates = (User.objects.filter(Q(is_superuser=True) | Q(groups__company_role__slug="security_engineer"),
                                      is_active=True, is_service_account=False)
                  .exclude(email="").distinct().order_by("username"))
    return [user for user in candidates if can_work_alerts(user)]


def alert_mail(alert: Alert, *, escalated: bool = False) -> int:
    """Mail ``alert`` to the people who work alerts; returns how many messages were sent."""
    minimum = settings.MONITORING_ALERT_MAIL_MIN_SEVERITY
    if alert.severity < minimum:
        return 0
    from monitoring.webhook_events import alert_url

    datasets = list(alert.datasets.all().only("pk", "qualified_name"))
    severity = Severity(alert.severity).label
    # One line whatever the title holds (a sign-in name typed by anyone can hold a line break, and
    # a subject with one makes Django refuse the whole batch: the alert would go unmailed).
    subject = " ".join(f"[{severity}] {alert.title}".split())[:200]
    messages = []
    for user in alert_workers():
        visible = set(dataset_visible(user=user).filter(pk__in=[d.pk for d in datasets])
                      .values_list("pk", flat=True)) if datasets else set()
        names = sorted(d.qualified_name for d in datasets if d.pk in visible)
        body = render_to_string("emails/alert_raised.txt", {
            "alert": alert, "severity": severity, "escalated": escalated, "datasets": names,
            "hidden": len(datasets) - len(names), "url": alert_url(alert),
            "min_severity": Severity(minimum).label,
        })
        messages.append((subject, body, settings.DEFAULT_FROM_EMAIL, [user.email]))
    if not messages:
        return 0
    try:
        return send_mass_mail(messages, fail_silently=False)
    except Exception:
        logger.exception("Could not send the mail of alert %s", alert.pk)
        return 0


def alert_notify(sender, *, alert: Alert, escalated: bool = False, **kwargs) -> None:
    """Receiver of ``alert_raised``: mail and webhooks. Never raises into the sender."""
    from monitoring.webhook_events import alert_webhooks_enqueue

    alert = Alert.objects.select_related("user").get(pk=alert.pk)
    alert_mail(alert, escalated=escalated)
    try:
        alert_webhooks_enqueue(alert)
    except Exception:
        logger.exception("Could not record the webhook deliveries of alert %s", alert.pk)
