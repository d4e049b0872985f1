"""Routes of the identity app's scim part: SCIM 2.0 (RFC 7644) for provisioning clients."""

from django.urls import path

from identity import scim_apis

urlpatterns = [
    path("Users", scim_apis.UsersApi.as_view(), name="scim-users"),
    path("Users/<str:pk>", scim_apis.UserApi.as_view(), name="scim-user"),
    path("Groups", scim_apis.GroupsApi.as_view(), name="scim-groups"),
    path("Groups/<str:pk>", scim_apis.GroupApi.as_view(), name="scim-group"),
    path("ServiceProviderConfig", scim_apis.ServiceProviderConfigApi.as_view(), name="scim-service-provider-config"),
    path("Schemas", scim_apis.SchemasApi.as_view(), name="scim-schemas"),
    path("Schemas/<str:schema_id>", scim_apis.SchemaApi.as_view(), name="scim-schema"),
    path("ResourceTypes", scim_apis.ResourceTypesApi.as_view(), name="scim-resource-types"),
    path("ResourceTypes/<str:name>", scim_apis.ResourceTypeApi.as_view(), name="scim-resource-type"),
]
