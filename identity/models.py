from django.conf import settings
from django.db import models


class ExternalIdentity(models.Model):
    """A person as the identity provider knows them: ``(issuer, subject)`` is the stable key
    (the ID token's ``iss`` and ``sub``), never the e-mail address."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_identities")
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="uniq_external_identity")]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class DirectoryAccount(models.Model):
    """A user the company directory manages (provisioned by SCIM or created by a single sign-on):
    their company roles come from their directory groups through the mapping, and nothing else."""

    class Source(models.TextChoices):
        OIDC = "oidc", "Single sign-on"
        SCIM = "scim", "SCIM provisioning"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="directory_account")
    source = models.CharField(max_length=8, choices=Source.choices)
    external_id = models.CharField(max_length=255, blank=True, db_index=True,
                                   help_text="The directory's id for the user (SCIM externalId).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.get_source_display()})"


class DirectoryGroup(models.Model):
    """A group of the company directory, from SCIM or from an ID token's groups claim."""

    display_name = models.CharField(max_length=255, unique=True)
    external_id = models.CharField(max_length=255, blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="directory_groups", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["display_name"]

    def __str__(self) -> str:
        return self.display_name


class GroupRoleMapping(models.Model):
    """A directory group name (any case) gives a company role. ``OIDC_GROUP_ROLES`` in the
    environment gives more; the admin page adds these."""

    group_name = models.CharField(max_length=255)
    role = models.ForeignKey("access.Role", on_delete=models.CASCADE, related_name="directory_mappings")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["group_name", "role__name"]
        constraints = [models.UniqueConstraint(fields=["group_name", "role"], name="uniq_group_role_mapping")]

    def __str__(self) -> str:
        return f"{self.group_name} → {self.role}"


class ScimToken(models.Model):
    """The bearer token of a SCIM provisioning client (the identity provider's connector). Only
    the SHA-256 digest of the key is stored; the key is printed once by ``manage.py scim_token``.
    It opens ``/scim/v2/`` and nothing else."""

    name = models.CharField(max_length=100, unique=True, help_text="Which provisioning client holds it.")
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="First characters of the key, to tell tokens apart.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"SCIM client {self.name} ({self.prefix}…)"


class ScimProvisioning(models.Model):
    """What SCIM keeps about a user it provisions beyond the user row: when it was deprovisioned
    (a SCIM DELETE: the user is deactivated and no longer listed; nothing else is deleted)."""

    account = models.OneToOneField(DirectoryAccount, on_delete=models.CASCADE, related_name="scim")
    deprovisioned_at = models.DateTimeField(null=True, blank=True)
