from django.urls import path

from monitoring import views

urlpatterns = [
    path("alerts/", views.alert_list, name="alert-list"),
    path("alerts/count/", views.alert_count, name="alert-count"),
    path("alerts/<int:pk>/", views.alert_detail, name="alert-detail"),
    path("alerts/<int:pk>/acknowledge/", views.alert_acknowledge, name="alert-acknowledge"),
    path("alerts/<int:pk>/assign/", views.alert_assign, name="alert-assign"),
    path("alerts/<int:pk>/resolve/", views.alert_resolve, name="alert-resolve"),
    path("alerts/<int:pk>/snooze/", views.alert_snooze, name="alert-snooze"),
    path("alerts/<int:pk>/reopen/", views.alert_reopen, name="alert-reopen"),
]
