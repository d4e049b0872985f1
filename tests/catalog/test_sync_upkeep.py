"""Keeping runs and connections tidy: resending lost runs once, and the admin deleting a store."""

import sqlite3
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from catalog import sync
from catalog.connections import connection_save
from catalog.models import Connection, DataStore, Secret, SyncRun, SyncRunEvent, SyncStatus
from tests.factories import StoreFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    """The runs handed to the broker (the real send needs a worker; the worker tests cover it)."""
    ids = []
    monkeypatch.setattr(sync, "_enqueue", ids.append)
    return ids


@pytest.fixture
def connected(platform_engineer, tmp_path):
    path = tmp_path / "wh.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER)")
    store = StoreFactory(name="shop", platform="sqlite")
    connection_save(principal=platform_engineer, store=store, password="pw-123456", database=str(path), schedule="0 2 * * *")
    return store


def stale(settings) -> timezone.datetime:
    return timezone.now() - timedelta(seconds=settings.SYNC_STALE_SECONDS + 60)


def test_a_queued_run_nobody_picked_up_is_resent_once_per_stale_period(connected, sent, settings):
    run = SyncRun.objects.create(store=connected)
    SyncRun.objects.filter(pk=run.pk).update(created_at=stale(settings))

    assert sync.sync_runs_resume() == [run.pk]
    assert sync.sync_runs_resume() == []  # a minute later: the message sent has its time to land
    assert sent == [run.pk]

    SyncRun.objects.filter(pk=run.pk).update(resent_at=stale(settings))  # and still nothing after a stale period
    assert sync.sync_runs_resume() == [run.pk]
    assert sent == [run.pk, run.pk]


def test_a_running_run_with_a_fresh_heartbeat_is_left_alone(connected, sent, settings):
    running = SyncRun.objects.create(store=connected, status=SyncStatus.RUNNING, heartbeat_at=timezone.now())
    SyncRun.objects.filter(pk=running.pk).update(created_at=stale(settings))

    assert sync.sync_runs_resume() == []

    SyncRun.objects.filter(pk=running.pk).update(heartbeat_at=stale(settings))
    assert sync.sync_runs_resume() == [running.pk]
    assert sent == [running.pk]


def test_deleting_a_store_in_the_admin_removes_its_secret_and_schedule(connected, admin_user, client):
    client.force_login(admin_user)
    assert Secret.objects.count() == 1 and PeriodicTask.objects.filter(task="catalog.store_sync_scheduled").count() == 1

    response = client.post(f"/admin/catalog/datastore/{connected.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not DataStore.objects.filter(pk=connected.pk).exists()
    assert not Connection.objects.exists() and not Secret.objects.exists()
    assert not PeriodicTask.objects.filter(task="catalog.store_sync_scheduled").exists()


def test_the_admin_run_page_shows_the_first_events_only(connected, admin_user, client):
    run = SyncRun.objects.create(store=connected, status=SyncStatus.SUCCEEDED)
    SyncRunEvent.objects.bulk_create(
        SyncRunEvent(run=run, object_name=f"shop.t{i:04d}", outcome="new", message="1 columns") for i in range(150)
    )
    client.force_login(admin_user)

    response = client.get(f"/admin/catalog/syncrun/{run.pk}/change/")

    assert response.status_code == 200
    assert b"shop.t0099" in response.content and b"shop.t0100" not in response.content
