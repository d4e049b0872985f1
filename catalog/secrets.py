"""Envelope encryption for connection secrets.

Each secret gets its own random data key; the value is encrypted with it (AES-256-GCM),
and the data key is wrapped (encrypted) by a master key from the environment. Only the
wrapped data key and the id of the master key are stored next to the ciphertext.

``CATALOG_MASTER_KEYS`` lists master keys as ``<id>:<base64 of 32 bytes>``, comma
separated, the first one active. Rotation without downtime: put a new key first (keep
the old ones), deploy, run ``manage.py rotate_keys`` (it re-wraps data keys only), then
drop the old keys.
"""

import base64
import os
import re
import secrets as stdlib_secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from catalog.models import Secret

KEY_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
NONCE_BYTES = 12
VALUE_CONTEXT = b"catalog-secret-value"


class SecretUnavailable(Exception):
    """A secret cannot be opened (its master key is not configured, or it was tampered with)."""


def master_keys_parse(entries) -> list[tuple[str, bytes]]:
    """``["id:base64", ...]`` -> ``[(id, key bytes), ...]``; raises ImproperlyConfigured naming the bad entry
    by position (never by its value)."""
    keys, seen = [], set()
    for position, entry in enumerate(entries, start=1):
        key_id, _, encoded = entry.strip().partition(":")
        if not KEY_ID_RE.match(key_id) or not encoded:
            raise ImproperlyConfigured(f"CATALOG_MASTER_KEYS entry {position} must look like <id>:<base64 key>.")
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            raise ImproperlyConfigured(f"CATALOG_MASTER_KEYS entry {position} ({key_id}) is not valid base64.") from None
        if len(key) != 32:
            raise ImproperlyConfigured(f"CATALOG_MASTER_KEYS entry {position} ({key_id}) must decode to 32 bytes.")
        if key_id in seen:
            raise ImproperlyConfigured(f"CATALOG_MASTER_KEYS names key {key_id} twice.")
        seen.add(key_id)
        keys.append((key_id, key))
    return keys


def master_key_generate(key_id: str | None = None) -> str:
    """A new master key entry for ``CATALOG_MASTER_KEYS``."""
    key_id = key_id or timezone.now().strftime("k%Y%m%d%H%M%S")
    if not KEY_ID_RE.match(key_id):
        raise ValueError("A key id uses letters, digits, _ . and - (at most 64).")
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip('=')}"


def _keys() -> list[tuple[str, bytes]]:
    keys = master_keys_parse(settings.CATALOG_MASTER_KEYS)
    if not keys:
        raise ImproperlyConfigured("CATALOG_MASTER_KEYS is empty: connection secrets cannot be encrypted.")
    return keys


def _seal(key: bytes, plaintext: bytes, context: bytes) -> bytes:
    nonce = stdlib_secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def _unseal(key: bytes, sealed: bytes, context: bytes) -> bytes:
    sealed = bytes(sealed)
    return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context)


@sensitive_variables("plaintext", "data_key")
def secret_seal(plaintext: str, *, secret: Secret | None = None) -> Secret:
    """Encrypt ``plaintext`` under a new data key wrapped by the active master key, and save it
    (into ``secret`` when given, replacing its value)."""
    key_id, master = _keys()[0]
    data_key = AESGCM.generate_key(bit_length=256)
    secret = secret or Secret()
    secret.ciphertext = _seal(data_key, plaintext.encode(), VALUE_CONTEXT)
    secret.wrapped_key = _seal(master, data_key, key_id.encode())
    secret.key_id = key_id
    secret.rotated_at = None
    secret.save()
    return secret


@sensitive_variables()
def secret_open(secret: Secret) -> str:
    """The plaintext of a sealed secret. Only workers and the connection test call this."""
    master = dict(_keys()).get(secret.key_id)
    if master is None:
        raise SecretUnavailable(
            f"Secret #{secret.pk} is wrapped by master key '{secret.key_id}', which CATALOG_MASTER_KEYS no longer lists."
        )
    try:
        data_key = _unseal(master, secret.wrapped_key, secret.key_id.encode())
        return _unseal(data_key, secret.ciphertext, VALUE_CONTEXT).decode()
    except (InvalidTag, ValueError):  # ValueError: bytes cut shorter than a nonce
        raise SecretUnavailable(f"Secret #{secret.pk} does not decrypt: it was altered or its key is wrong.") from None


def secrets_rotate(*, batch_size: int = 200) -> int:
    """Re-wrap every data key not yet under the active master key. Returns how many were re-wrapped.

    Each batch is its own short transaction with rows locked (SKIP LOCKED), so workers keep
    opening secrets while this runs and two rotations at once do not fight.
    """
    keys = _keys()
    active_id, active = keys[0]
    by_id = dict(keys)
    rotated = 0
    while True:
        with transaction.atomic():
            batch = list(
                Secret.objects.select_for_update(skip_locked=True).exclude(key_id=active_id).order_by("pk")[:batch_size]
            )
            if not batch:
                return rotated
            for secret in batch:
                master = by_id.get(secret.key_id)
                if master is None:
                    raise SecretUnavailable(
                        f"Secret #{secret.pk} is wrapped by master key '{secret.key_id}', which CATALOG_MASTER_KEYS "
                        "no longer lists: add it back (after the active key) and run rotate_keys again."
                    )
                try:
                    data_key = _unseal(master, secret.wrapped_key, secret.key_id.encode())
                except (InvalidTag, ValueError):
                    raise SecretUnavailable(
                        f"Secret #{secret.pk} does not decrypt: it was altered or its key is wrong. Nothing was re-wrapped "
                        "in this batch; set the connection's password again to replace it."
                    ) from None
                secret.wrapped_key = _seal(active, data_key, active_id.encode())
                secret.key_id = active_id
                secret.rotated_at = timezone.now()
            Secret.objects.bulk_update(batch, ["wrapped_key", "key_id", "rotated_at"])
            rotated += len(batch)
