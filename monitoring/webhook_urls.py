"""Pages of outgoing webhooks, included from config/urls.py at monitoring/webhooks/."""

from django.urls import path

from monitoring import webhook_views

urlpatterns = [
    path("", webhook_views.webhook_list, name="list"),
    path("<int:pk>/", webhook_views.webhook_detail, name="detail"),
    path("<int:pk>/remove/", webhook_views.webhook_remove, name="remove"),
    path("<int:pk>/test/", webhook_views.webhook_test, name="test"),
    path("deliveries/<int:pk>/retry/", webhook_views.delivery_retry, name="delivery-retry"),
]
