"""Grants made real in PostgreSQL warehouses: GRANT on approval, REVOKE at the end, and a
reconciler that makes the database match the catalog."""

from catalog.models import Platform


def store_is_managed(store) -> bool:
    """A store whose grants are applied in the warehouse: PostgreSQL with a connection."""
    return store.platform == Platform.POSTGRESQL and hasattr(store, "connection")
