import hashlib

from django.contrib.auth.models import AbstractUser, Group
from django.db import models


class User(AbstractUser):
    """A person who signs in, or a pipeline's service account (which never signs in)."""

    is_service_account = models.BooleanField(
        default=False, help_text="Pipelines authenticate with a token and cannot log in to the browser."
    )

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.username


class Role(models.Model):
    """A company role (data scientist, security engineer, ...).

    Users get roles through groups: a user holds a role when they are in its group.
    """

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=128)
    description = models.TextField(blank=True)
    group = models.OneToOneField(Group, on_delete=models.PROTECT, related_name="company_role")
    can_register = models.BooleanField(
        default=False, help_text="Members may register and edit datasets in any store."
    )
    can_manage_stores = models.BooleanField(default=False, help_text="Members may create and edit stores.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def token_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ServiceToken(models.Model):
    """An API token. Only its SHA-256 digest is stored; the key is shown once, at creation."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="service_tokens")
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="First characters of the key, to tell tokens apart.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user.username} ({self.prefix}…)"
