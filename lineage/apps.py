from django.apps import AppConfig


class LineageConfig(AppConfig):
    """Lineage between datasets and columns. Models arrive with the lineage issue; until then
    originating sources are stored parsed on catalog columns, ready to become edges."""

    name = "lineage"
    verbose_name = "Lineage"
