from django.apps import AppConfig


class LineageConfig(AppConfig):
    """Lineage between datasets, columns and external sources; effective sensitivity."""

    name = "lineage"
    verbose_name = "Lineage"
