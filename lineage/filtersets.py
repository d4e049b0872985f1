"""Filters of the job list, shared by the page and the endpoint; all live in the URL."""

import django_filters
from django.db.models import Q


class JobFilterSet(django_filters.FilterSet):
    """``?jobType=MODEL&integration=DBT&processingType=BATCH&q=orders`` (the ``jobType`` job facet)."""

    jobType = django_filters.CharFilter(field_name="job_type", lookup_expr="iexact", max_length=64,
                                        help_text="The jobType facet's jobType, e.g. MODEL, QUERY, TASK, DAG.")
    integration = django_filters.CharFilter(field_name="integration", lookup_expr="iexact", max_length=64,
                                            help_text="The jobType facet's integration, e.g. DBT, SPARK, AIRFLOW.")
    processingType = django_filters.CharFilter(field_name="processing_type", lookup_expr="iexact", max_length=64,
                                               help_text="BATCH or STREAMING.")
    q = django_filters.CharFilter(method="filter_search", max_length=200,
                                  help_text="Part of the job's namespace or name.")

    def filter_search(self, queryset, name, value):
        value = value.strip()
        return queryset.filter(Q(name__icontains=value) | Q(namespace__icontains=value)) if value else queryset
