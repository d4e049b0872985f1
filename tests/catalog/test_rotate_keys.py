"""``manage.py rotate_keys``: re-wrapping connection secrets under a new master key."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from catalog.models import Secret
from catalog.secrets import secret_open, secret_seal

OLD = "old:" + "A" * 43
NEW = "new:" + "B" * 43


def run(*args) -> str:
    out = StringIO()
    call_command("rotate_keys", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_rotate_keys_rewraps_every_secret_under_the_new_key_and_values_still_open():
    with override_settings(CATALOG_MASTER_KEYS=[OLD]):
        sealed = [secret_seal(f"password-{n}") for n in range(3)]
    ciphertexts = {s.pk: bytes(s.ciphertext) for s in sealed}
    with override_settings(CATALOG_MASTER_KEYS=[NEW, OLD]):
        output = run()
    assert "Re-wrapped 3 secret(s) under key 'new'; 0 left" in output
    with override_settings(CATALOG_MASTER_KEYS=[NEW]):  # the old key can go once rotation is done
        for secret in Secret.objects.all():
            assert secret.key_id == "new"
            assert bytes(secret.ciphertext) == ciphertexts[secret.pk]  # only the data key was re-wrapped
            assert secret_open(secret).startswith("password-")


@pytest.mark.django_db
def test_rotate_keys_refuses_when_an_old_key_was_dropped_too_early():
    with override_settings(CATALOG_MASTER_KEYS=[OLD]):
        secret_seal("password")
    with override_settings(CATALOG_MASTER_KEYS=[NEW]), pytest.raises(CommandError, match="'old'"):
        run()
    assert Secret.objects.get().key_id == "old"


@pytest.mark.django_db
def test_rotate_keys_status_counts_secrets_per_key_and_names_unconfigured_ones():
    with override_settings(CATALOG_MASTER_KEYS=[OLD]):
        secret_seal("one")
    with override_settings(CATALOG_MASTER_KEYS=[NEW]):
        secret_seal("two")
        output = run("--status")
    assert "new: 1 secret(s) (active)" in output
    assert "old: 1 secret(s) (NOT CONFIGURED" in output


def test_rotate_keys_generate_prints_a_usable_entry():
    entry = run("--generate", "k9").strip()
    assert entry.startswith("k9:")
    from catalog.secrets import master_keys_parse

    assert len(master_keys_parse([entry])[0][1]) == 32


@pytest.mark.django_db
def test_rotate_keys_rewraps_a_connections_sealed_options_too():
    from catalog.connections import connection_save
    from catalog.connectors import connector_for
    from catalog.models import Connection
    from tests.factories import StoreFactory, UserFactory

    engineer = UserFactory(username="pia", roles=["platform_engineer"])
    store = StoreFactory(name="appdb", platform="postgresql")
    with override_settings(CATALOG_MASTER_KEYS=[OLD]):
        connection_save(principal=engineer, store=store, host="db.internal", database="app", password="password-1",
                        options={"sslmode": "require", "sslpassword": "key-passphrase"})
    with override_settings(CATALOG_MASTER_KEYS=[NEW, OLD]):
        output = run()
    assert "Re-wrapped 2 secret(s) under key 'new'; 0 left" in output
    with override_settings(CATALOG_MASTER_KEYS=[NEW]):
        connection = Connection.objects.get(store=store)
        assert connection.options_secret.key_id == "new"
        assert connector_for(connection, secret_open(connection.secret)).connect_args()["sslpassword"] == "key-passphrase"
