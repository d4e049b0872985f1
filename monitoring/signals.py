"""Signals of the monitoring app.

``alert_raised`` is sent (after the transaction commits) when a detector opens a new alert or
raises the severity of an open one; the notifier (e-mail to security engineers, webhooks per
severity) listens to it, so detectors do not know where alerts go.
"""

from django.dispatch import Signal

alert_raised = Signal()  # sender=Alert, alert=<Alert>, escalated=<bool>
