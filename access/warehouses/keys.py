"""The per-dataset key of keyed hashes and tokens, sealed by envelope encryption.

HMAC-SHA256 is ``H((K ^ opad) || H((K ^ ipad) || m))``. Stores without a bitwise XOR over binary
strings (MariaDB) get the two padded keys precomputed here, so they compute a true HMAC with SHA2
alone and the raw key never reaches them.
"""

import secrets as stdlib_secrets

from django.db import transaction
from django.views.decorators.debug import sensitive_variables

BLOCK = 64  # SHA-256 block size in bytes


@sensitive_variables()
def dataset_key(dataset) -> bytes:
    """The dataset's 32-byte key, made and sealed on first use."""
    from access.models import DatasetKey
    from catalog.secrets import secret_open, secret_seal

    found = DatasetKey.objects.filter(dataset=dataset).select_related("secret").first()
    if found is None:
        with transaction.atomic():
            found = DatasetKey.objects.select_for_update().filter(dataset=dataset).select_related("secret").first()
            if found is None:
                secret = secret_seal(stdlib_secrets.token_hex(32))
                found = DatasetKey.objects.create(dataset=dataset, secret=secret)
    return bytes.fromhex(secret_open(found.secret))


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """``(K ^ ipad, K ^ opad)`` for HMAC-SHA256 (keys longer than a block are not used here)."""
    padded = key.ljust(BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in padded), bytes(b ^ 0x5C for b in padded)
