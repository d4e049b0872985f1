from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self):
        from monitoring import webhook_tasks  # noqa: F401  (registers the webhook tasks with Celery)
        from monitoring.notify import alert_notify
        from monitoring.signals import alert_raised

        alert_raised.connect(alert_notify, dispatch_uid="monitoring.notify.alert_notify")
