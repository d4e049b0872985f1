from django.urls import path

from monitoring import apis

urlpatterns = [
    path("monitoring/logs/", apis.LogPushApi.as_view(), name="monitoring-log-push"),
    path("monitoring/events/", apis.AccessEventListApi.as_view(), name="monitoring-event-list"),
    path("monitoring/shipper-tokens/", apis.ShipperTokenListCreateApi.as_view(), name="monitoring-shipper-token-list"),
    path("monitoring/shipper-tokens/<int:pk>/revoke/", apis.ShipperTokenRevokeApi.as_view(),
         name="monitoring-shipper-token-revoke"),
    path("datasets/<int:pk>/usage/", apis.DatasetUsageApi.as_view(), name="dataset-usage"),
]
