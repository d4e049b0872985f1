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

urlpatterns += [
    path("monitoring/alerts/", apis.AlertListApi.as_view(), name="monitoring-alert-list"),
    path("monitoring/alerts/<int:pk>/", apis.AlertDetailApi.as_view(), name="monitoring-alert-detail"),
    path("monitoring/alerts/<int:pk>/acknowledge/", apis.AlertAcknowledgeApi.as_view(), name="monitoring-alert-acknowledge"),
    path("monitoring/alerts/<int:pk>/assign/", apis.AlertAssignApi.as_view(), name="monitoring-alert-assign"),
    path("monitoring/alerts/<int:pk>/resolve/", apis.AlertResolveApi.as_view(), name="monitoring-alert-resolve"),
    path("monitoring/alerts/<int:pk>/snooze/", apis.AlertSnoozeApi.as_view(), name="monitoring-alert-snooze"),
    path("monitoring/alerts/<int:pk>/reopen/", apis.AlertReopenApi.as_view(), name="monitoring-alert-reopen"),
]
