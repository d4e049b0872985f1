"""Reading settings from the environment.

Malformed values raise ImproperlyConfigured at start-up instead of being silently
replaced by a default (healthchecks' ``envbool`` does the same).
"""

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {raw!r}.")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_sensitivity(name: str, default: str, *, lowest: str = "Public") -> int:
    """A sensitivity tier given by its label (``Sensitive``; synonyms as in registration), at least
    ``lowest``; returned as the tier's number."""
    from catalog.vocabulary import parse_sensitivity  # plain enums and parsing: safe before apps load

    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        raw = default
    try:
        tier, floor = parse_sensitivity(raw), parse_sensitivity(lowest)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None
    if tier < floor:
        raise ImproperlyConfigured(f"{name} must be {lowest} or higher, got {raw!r}.")
    return int(tier)


def env_paths(name: str, default: list[str] | None = None) -> list[str]:
    """Absolute directory paths, comma separated; a relative one is refused (it would depend on
    the directory each process happens to start in)."""
    paths = env_list(name, default)
    for position, path in enumerate(paths, start=1):
        if not os.path.isabs(path):
            raise ImproperlyConfigured(f"{name} entry {position} must be an absolute path, got {path!r}.")
    return paths


def env_hosts(name: str) -> list[str]:
    """Host names and networks (``db.internal``, ``10.0.0.0/8``, ``192.0.2.7``), comma separated."""
    import ipaddress
    import re

    entries = env_list(name)
    for position, entry in enumerate(entries, start=1):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})", entry) or ".." in entry:
                raise ImproperlyConfigured(
                    f"{name} entry {position} must be a host name, an address or a network (CIDR), got {entry!r}."
                ) from None
    return entries
