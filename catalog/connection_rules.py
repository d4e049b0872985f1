"""What a warehouse connection may reach, checked when it is saved and again when it connects.

A platform engineer writes a connection, but the catalog's own processes use it, with their
files, environment and network. So a connection can only connect:

- driver options come from each platform's allow-list (the ``options_allowed`` of each class
  in ``catalog/connectors.py``), built from the :class:`Option` kinds here, with checked values;
- files it names (SQLite and DuckDB databases; TLS certificates and keys) must lie in
  directories the operator chose, symbolic links resolved, and never be the catalog's own files;
- when the operator lists hosts or networks, it reaches only those.

Every check returns messages (empty: fine) so that the save can name the field and the
connector can refuse before it opens anything.
"""

import contextlib
import ipaddress
import os
import re
import socket
from dataclasses import dataclass

from django.conf import settings

HOST_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})")
NAME_RE = re.compile(r"[A-Za-z0-9_$][A-Za-z0-9_$.-]{0,254}")
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}
# Never a database, whatever directory the operator allows: the kernel's views of processes and devices.
SYSTEM_TREES = ("/proc", "/sys", "/dev")


@dataclass(frozen=True)
class Option:
    """One driver option a platform allows, and the values it takes.

    ``kind``: ``choice`` (one of ``choices``), ``flag`` (a boolean), ``number`` (``low``..``high``),
    ``name`` (an identifier such as a Snowflake role), ``file`` (a path in
    ``CATALOG_CONNECTION_FILES_DIR``, or one of ``choices``) or ``secret`` (sealed like the
    password, never stored in ``options`` or shown).
    """

    kind: str
    choices: tuple = ()
    low: int = 0
    high: int = 0

    @property
    def secret(self) -> bool:
        return self.kind == "secret"

    def clean(self, value):
        """The value as stored; ValueError with a message that never repeats a secret."""
        if self.kind == "secret":
            if not isinstance(value, str) or not value or len(value) > 4096 or "\x00" in value:
                raise ValueError("must be a non-empty string (it is sealed and never shown).")
            return value
        if isinstance(value, bool) and self.kind != "flag":
            raise ValueError(f"{_shown(value)} is not allowed here.")
        if self.kind == "flag":
            if isinstance(value, bool):
                return value
            word = str(value).strip().lower() if isinstance(value, (str, int)) else None
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
            raise ValueError(f"{_shown(value)} is not a boolean (true or false).")
        if self.kind == "number":
            try:
                number = int(str(value).strip()) if isinstance(value, (str, int)) else None
            except ValueError:
                number = None
            if number is None or not self.low <= number <= self.high:
                raise ValueError(f"{_shown(value)} is not a whole number from {self.low} to {self.high}.")
            return number
        if not isinstance(value, (str, int)):
            raise ValueError(f"{_shown(value)} is not a string.")
        text = str(value).strip()
        if self.kind == "choice":
            if text not in self.choices:
                raise ValueError(f"{_shown(value)} is not one of {', '.join(self.choices)}.")
            return text
        if self.kind == "name":
            if not NAME_RE.fullmatch(text):
                raise ValueError(f"{_shown(value)} is not a plain name (letters, digits, _ $ . -).")
            return text
        if self.kind == "file":
            if text in self.choices:
                return text
            problems = connection_file_problems(text)
            if problems:
                raise ValueError(" ".join(problems))
            return text
        raise ValueError("is not allowed.")  # an unknown kind: refuse rather than pass it on

    def driver_value(self, value):
        """What the driver gets: the resolved path for files (the one that was checked)."""
        if self.kind == "file" and value not in self.choices:
            return os.path.realpath(value)
        return value


def choice(*values: str) -> Option:
    return Option("choice", choices=values)


def flag() -> Option:
    return Option("flag")


def number(low: int, high: int) -> Option:
    return Option("number", low=low, high=high)


def name() -> Option:
    return Option("name")


def file(*special: str) -> Option:
    return Option("file", choices=special)


def secret() -> Option:
    return Option("secret")


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def option_problems(allowed: dict[str, Option], options: dict, sealed: dict, *, platform: str) -> list[str]:
    """What is wrong with a connection's ``options`` (kept in clear) and ``sealed`` options."""
    problems = []
    for option, value in sorted((options or {}).items()):
        rule = allowed.get(option)
        if rule is None:
            problems.append(_unknown(option, allowed, platform))
        elif rule.secret:
            problems.append(f"{option} is stored in clear: save the connection again with it to seal it.")
        else:
            try:
                rule.clean(value)
            except ValueError as exc:
                problems.append(f"{option}: {exc}")
    for option, value in sorted((sealed or {}).items()):
        rule = allowed.get(option)
        if rule is None or not rule.secret:
            problems.append(_unknown(option, allowed, platform))
            continue
        try:
            rule.clean(value)
        except ValueError as exc:
            problems.append(f"{option}: {exc}")
    return problems


def _unknown(option: str, allowed: dict, platform: str) -> str:
    names = ", ".join(sorted(allowed)) or "none"
    return f"{str(option)[:60]!r} is not an option a {platform} connection may set (allowed: {names})."


# Files -----------------------------------------------------------------------------------------


def _under(path: str, directory: str) -> bool:
    return path != directory and os.path.commonpath([path, directory]) == directory


def catalog_own_files() -> set[str]:
    """The catalog's own files that no connection may open: its SQLite databases, the master key
    of the local settings, the embedded Celery broker (symbolic links resolved)."""
    files = set()
    for database in settings.DATABASES.values():
        if "sqlite" in database.get("ENGINE", "") and database.get("NAME") and str(database["NAME"]) != ":memory:":
            files.add(os.path.realpath(database["NAME"]))
    files.add(os.path.realpath(os.path.join(settings.VAR_DIR, "master-key")))
    broker = str(getattr(settings, "CELERY_BROKER_URL", "") or "")
    if broker.startswith("sqla+sqlite:///"):
        files.add(os.path.realpath(broker[len("sqla+sqlite:///"):]))
    return files


def _own_file(real: str) -> bool:
    var_dir = os.path.realpath(settings.VAR_DIR)
    if os.path.dirname(real) == var_dir:
        return True  # everything directly in var/: the database, its journals, the key, the broker
    if any(real == tree or _under(real, tree) for tree in SYSTEM_TREES):
        return True
    own_files = catalog_own_files()
    if any(real == own or real.startswith(own + "-") for own in own_files):  # and SQLite's -wal, -shm, -journal
        return True
    # A hard link to one of them is the same file under another name.
    try:
        target = os.stat(real)
    except OSError:
        return False  # nothing there (yet): it cannot be one of them
    candidates = set(own_files)
    with contextlib.suppress(OSError):
        candidates.update(entry.path for entry in os.scandir(var_dir) if entry.is_file())
    for own in candidates:
        with contextlib.suppress(OSError):
            found = os.stat(own)
            if (found.st_dev, found.st_ino) == (target.st_dev, target.st_ino):
                return True
    return False


def file_store_problems(path: str) -> list[str]:
    """Whether a SQLite or DuckDB database path may be opened: an absolute local path whose real
    location is under one of ``CATALOG_FILE_STORES_DIRS``, and none of the catalog's own files."""
    if not path:
        return []
    if "://" in path or path.startswith(("md:", "motherduck:", "file:", ":")) or "\x00" in path:
        return ["A path of a local database file: not a URL, an in-memory or a MotherDuck database."]
    if not os.path.isabs(path):
        return ["An absolute path, e.g. /srv/warehouses/shop.sqlite3."]
    directories = [os.path.realpath(directory) for directory in settings.CATALOG_FILE_STORES_DIRS]
    if not directories:
        return ["File stores are turned off here: the operator lists the directories their files may be in "
                "with CATALOG_FILE_STORES_DIRS."]
    real = os.path.realpath(path)
    if not any(_under(real, directory) for directory in directories):
        return [f"The file must be in {' or '.join(settings.CATALOG_FILE_STORES_DIRS)} "
                "(CATALOG_FILE_STORES_DIRS; symbolic links are followed)."]
    if _own_file(real):
        return ["That is one of the catalog's own files."]
    return []


def connection_file_problems(path: str) -> list[str]:
    """Whether a file a driver option names (a certificate, a key) may be read: its real location
    is under ``CATALOG_CONNECTION_FILES_DIR``, and it is none of the catalog's own files."""
    directory = settings.CATALOG_CONNECTION_FILES_DIR
    if not directory:
        return ["Certificate and key files are turned off here: the operator names their directory with "
                "CATALOG_CONNECTION_FILES_DIR."]
    if not os.path.isabs(path) or "\x00" in path:
        return [f"An absolute path in {directory}."]
    real = os.path.realpath(path)
    if not _under(real, os.path.realpath(directory)):
        return [f"The file must be in {directory} (CATALOG_CONNECTION_FILES_DIR; symbolic links are followed)."]
    if _own_file(real):
        return ["That is one of the catalog's own files."]
    return []


# Hosts -----------------------------------------------------------------------------------------


def _address(host: str):
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def host_problems(host: str) -> list[str]:
    """Whether a connection may reach ``host``: one host name or address (never a socket path or a
    list), and, when ``CATALOG_CONNECTION_ALLOWED_HOSTS`` is set, listed there by name or resolving
    only to addresses inside its networks."""
    if not host:
        return []
    address = _address(host)
    if address is None and (not HOST_RE.fullmatch(host) or ".." in host):
        return ["One host name or IP address: no socket paths, lists, ports or spaces."]
    allowed = settings.CATALOG_CONNECTION_ALLOWED_HOSTS
    if not allowed:
        return []
    names, networks = set(), []
    for entry in allowed:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry.lower().rstrip("."))
    if address is None and host.lower().rstrip(".") in names:
        return []
    if address is not None:
        addresses = {address}
    else:
        try:
            addresses = {
                ipaddress.ip_address(info[4][0].split("%")[0])
                for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
            }
        except (OSError, UnicodeError, ValueError):
            addresses = set()
        if not addresses:
            return [f"{host} is not in CATALOG_CONNECTION_ALLOWED_HOSTS and does not resolve to an address."]
    outside = sorted(str(a) for a in addresses if not any(a.version == n.version and a in n for n in networks))
    if outside:
        return [f"{host} is not allowed: CATALOG_CONNECTION_ALLOWED_HOSTS lists neither it nor a network "
                f"holding {outside[0]}."]
    return []
