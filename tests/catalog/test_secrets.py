"""Envelope encryption of connection secrets (``catalog.secrets``)."""

import base64

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from catalog.models import Secret
from catalog.secrets import SecretUnavailable, master_keys_parse, secret_open, secret_seal, secrets_rotate

pytestmark = pytest.mark.django_db

OLD = "old:" + base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
NEW = "new:" + base64.urlsafe_b64encode(bytes(range(100, 132))).decode().rstrip("=")
PASSWORD = "correct horse battery staple"


def reloaded(secret: Secret) -> Secret:
    return Secret.objects.get(pk=secret.pk)


def test_sealed_secret_opens_to_its_value():
    secret = secret_seal(PASSWORD)

    assert secret_open(reloaded(secret)) == PASSWORD


def test_stored_bytes_do_not_contain_the_value():
    secret = reloaded(secret_seal(PASSWORD))

    for stored in (bytes(secret.ciphertext), bytes(secret.wrapped_key)):
        assert PASSWORD.encode() not in stored
        assert base64.b64encode(PASSWORD.encode()) not in stored
    assert PASSWORD not in repr(secret) and PASSWORD not in str(secret)


def test_two_seals_of_the_same_value_differ():
    first, second = secret_seal(PASSWORD), secret_seal(PASSWORD)

    assert bytes(first.ciphertext) != bytes(second.ciphertext)
    assert bytes(first.wrapped_key) != bytes(second.wrapped_key)


def test_rotation_rewraps_the_data_key_and_keeps_the_ciphertext():
    with override_settings(CATALOG_MASTER_KEYS=[OLD]):
        secret = secret_seal(PASSWORD)
    before = reloaded(secret)

    with override_settings(CATALOG_MASTER_KEYS=[NEW, OLD]):
        rotated = secrets_rotate()
        after = reloaded(secret)
        assert secret_open(after) == PASSWORD

    assert rotated == 1
    assert (before.key_id, after.key_id) == ("old", "new")
    assert bytes(after.ciphertext) == bytes(before.ciphertext)
    assert bytes(after.wrapped_key) != bytes(before.wrapped_key)
    assert after.rotated_at is not None


def test_rotated_secret_opens_once_the_old_key_is_dropped():
    with override_settings(CATALOG_MASTER_KEYS=[OLD]):
        secret = secret_seal(PASSWORD)
    with override_settings(CATALOG_MASTER_KEYS=[NEW, OLD]):
        secrets_rotate()

    with override_settings(CATALOG_MASTER_KEYS=[NEW]):
        assert secret_open(reloaded(secret)) == PASSWORD


def test_rotation_twice_rewraps_nothing_the_second_time():
    with override_settings(CATALOG_MASTER_KEYS=[OLD]):
        secret_seal(PASSWORD)

    with override_settings(CATALOG_MASTER_KEYS=[NEW, OLD]):
        assert secrets_rotate() == 1
        assert secrets_rotate() == 0


def test_rotation_goes_through_several_batches():
    with override_settings(CATALOG_MASTER_KEYS=[OLD]):
        sealed = [secret_seal(f"{PASSWORD} {n}") for n in range(5)]

    with override_settings(CATALOG_MASTER_KEYS=[NEW, OLD]):
        assert secrets_rotate(batch_size=2) == 5
        assert [secret_open(reloaded(s)) for s in sealed] == [f"{PASSWORD} {n}" for n in range(5)]
    assert set(Secret.objects.values_list("key_id", flat=True)) == {"new"}


def test_secret_wrapped_by_an_unknown_key_is_unavailable_and_names_the_key():
    with override_settings(CATALOG_MASTER_KEYS=[OLD]):
        secret = secret_seal(PASSWORD)

    with override_settings(CATALOG_MASTER_KEYS=[NEW]), pytest.raises(SecretUnavailable, match="'old'") as raised:
        secret_open(reloaded(secret))
    assert PASSWORD not in str(raised.value)


def test_rotation_refuses_a_secret_whose_key_was_dropped_too_early():
    with override_settings(CATALOG_MASTER_KEYS=[OLD]):
        secret = secret_seal(PASSWORD)

    with override_settings(CATALOG_MASTER_KEYS=[NEW]), pytest.raises(SecretUnavailable, match="'old'"):
        secrets_rotate()
    assert reloaded(secret).key_id == "old"


@pytest.mark.parametrize("field", ["ciphertext", "wrapped_key"])
def test_tampered_bytes_make_the_secret_unavailable(field):
    secret = reloaded(secret_seal(PASSWORD))
    tampered = bytearray(getattr(secret, field))
    tampered[-1] ^= 0x01
    setattr(secret, field, bytes(tampered))
    secret.save()

    with pytest.raises(SecretUnavailable, match="altered"):
        secret_open(reloaded(secret))


def test_rotation_names_a_tampered_secret_instead_of_crashing():
    with override_settings(CATALOG_MASTER_KEYS=[OLD]):
        secret = reloaded(secret_seal(PASSWORD))
    Secret.objects.filter(pk=secret.pk).update(wrapped_key=bytes(secret.wrapped_key)[:-1])

    with override_settings(CATALOG_MASTER_KEYS=[NEW, OLD]), pytest.raises(SecretUnavailable, match=f"#{secret.pk}"):
        secrets_rotate()
    assert reloaded(secret).key_id == "old"


@pytest.mark.parametrize("length", [0, 5, 20])
def test_truncated_ciphertext_makes_the_secret_unavailable(length):
    secret = reloaded(secret_seal(PASSWORD))
    secret.ciphertext = bytes(secret.ciphertext)[:length]
    secret.save()

    with pytest.raises(SecretUnavailable):
        secret_open(reloaded(secret))


def test_secret_relabelled_to_another_configured_key_is_unavailable():
    with override_settings(CATALOG_MASTER_KEYS=[NEW, OLD]):
        secret = secret_seal(PASSWORD)
        Secret.objects.filter(pk=secret.pk).update(key_id="old")

        with pytest.raises(SecretUnavailable):
            secret_open(reloaded(secret))


KEY_MATERIAL = base64.urlsafe_b64encode(b"k" * 31).decode()  # 31 bytes: one short


@pytest.mark.parametrize(("entry", "says"), [
    (KEY_MATERIAL, "must look like <id>:<base64 key>"),
    (f"bad id!:{KEY_MATERIAL}", "must look like <id>:<base64 key>"),
    ("k1:", "must look like <id>:<base64 key>"),
    (f"k1:{KEY_MATERIAL}", "must decode to 32 bytes"),
    ("k1:" + "A" * 41, "is not valid base64"),
    (f"k1:{KEY_MATERIAL}{KEY_MATERIAL}", "must decode to 32 bytes"),
])
def test_malformed_master_key_is_improperly_configured_without_echoing_it(entry, says):
    with pytest.raises(ImproperlyConfigured, match=says) as raised:
        master_keys_parse([entry])

    _, _, material = entry.partition(":")
    assert (material or entry) not in str(raised.value)
    assert KEY_MATERIAL[:12] not in str(raised.value)


def test_malformed_entry_is_named_by_position():
    with pytest.raises(ImproperlyConfigured, match="entry 2"):
        master_keys_parse([NEW, "k2:" + KEY_MATERIAL])


def test_same_key_id_twice_is_improperly_configured():
    with pytest.raises(ImproperlyConfigured, match="names key new twice"):
        master_keys_parse([NEW, NEW])


def test_malformed_setting_stops_sealing():
    with override_settings(CATALOG_MASTER_KEYS=["k1:" + KEY_MATERIAL]), pytest.raises(ImproperlyConfigured):
        secret_seal(PASSWORD)
    assert not Secret.objects.exists()


def test_empty_setting_stops_sealing():
    with override_settings(CATALOG_MASTER_KEYS=[]), pytest.raises(ImproperlyConfigured, match="empty"):
        secret_seal(PASSWORD)
