"""The cache and the Celery broker the settings point at really work (Redis in CI)."""

import uuid

from django.conf import settings
from django.core.cache import cache

from config.celery import app


def test_cache_round_trip():
    key = f"probe-{uuid.uuid4()}"
    cache.set(key, {"ok": True}, timeout=30)
    assert cache.get(key) == {"ok": True}
    cache.delete(key)
    assert cache.get(key) is None


def test_celery_broker_carries_a_message():
    queue_name = f"probe-{uuid.uuid4()}"
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=2)
        queue = connection.SimpleQueue(queue_name)
        try:
            queue.put({"probe": queue_name})
            message = queue.get(timeout=10)
            assert message.payload == {"probe": queue_name}
            message.ack()
        finally:
            queue.clear()
            queue.close()


def test_redis_is_used_when_redis_url_is_set():
    if settings.REDIS_URL:
        assert settings.CELERY_BROKER_URL == settings.REDIS_URL
        assert settings.CACHES["default"]["BACKEND"].endswith("RedisCache")
    else:
        assert settings.CELERY_BROKER_URL.startswith("sqla+sqlite:///")
        assert settings.CACHES["default"]["BACKEND"].endswith("LocMemCache")
