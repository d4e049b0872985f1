from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from catalog import selectors
from catalog.filtersets import DatasetFilterSet


@login_required
def dataset_list(request):
    filterset = DatasetFilterSet(request.GET, queryset=selectors.dataset_list(user=request.user))
    return render(request, "catalog/dataset_list.html", {"filterset": filterset, "datasets": filterset.qs[:50]})
