"""Settings of the Celery worker that ``test_sync_worker.py`` starts: the local settings (tasks
really queued, unlike the test settings), with Redis sweeping unacknowledged messages every
second instead of every ~100 s, so a killed worker's message comes back within the test."""

from config.settings.local import *  # noqa: F401,F403
from config.settings.local import CELERY_BROKER_TRANSPORT_OPTIONS

CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS, "unacked_restore_interval": 1, "unacked_restore_throttle": 1,
}
