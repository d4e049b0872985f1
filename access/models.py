import hashlib

from django.contrib.auth.models import AbstractUser, Group
from django.core.exceptions import ValidationError
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase


# PostgreSQL reads these as something other than one role: PUBLIC is every role, the others are
# special role specifications or the built-in pg_* roles. Granting to them would reach many people.
RESERVED_WAREHOUSE_ROLES = {"public", "none", "current_user", "current_role", "session_user", "all"}


def warehouse_role_reserved(role: str) -> bool:
    name = role.strip().lower()
    return name in RESERVED_WAREHOUSE_ROLES or name.startswith("pg_")


def validate_warehouse_role(value: str) -> None:
    if value and warehouse_role_reserved(value):
        raise ValidationError(f"'{value}' is not one person's role in PostgreSQL (PUBLIC, a special name or pg_*).")


class User(AbstractUser):
    """A person who signs in, or a pipeline's service account (which never signs in)."""

    is_service_account = models.BooleanField(
        default=False, help_text="Pipelines authenticate with a token and cannot log in to the browser."
    )
    warehouse_role = models.CharField(
        max_length=63, blank=True, validators=[validate_warehouse_role],
        help_text="The user's own role in managed PostgreSQL warehouses; grants are applied to it.",
    )

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        constraints = [
            # One person per warehouse role: a grant to a shared role would reach the others.
            models.UniqueConstraint(
                fields=["warehouse_role"], condition=~models.Q(warehouse_role=""), name="uniq_warehouse_role"
            ),
        ]

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
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Who made the token (empty when made on the command line).",
    )
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="After this the token is refused (SERVICE_TOKEN_TTL_DAYS from creation).",
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_address = models.GenericIPAddressField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user.username} ({self.prefix}…)"

    def is_expired(self, now) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def state(self, now) -> str:
        """revoked, expired or active, as the token list shows it."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.is_expired(now) else "active"


class ServiceTokenAddress(models.Model):
    """An address a token has been used from: the first use from an address not listed here is
    an audit event (``token.new_address``)."""

    token = models.ForeignKey(ServiceToken, on_delete=models.CASCADE, related_name="addresses")
    address = models.GenericIPAddressField()
    first_seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["token", "address"], name="uniq_service_token_address")]


# Justifications, reasons and notes people write (requests, reviews, break-glass, revocations,
# access reviews, proposals): room for an incident summary, short enough that an approver reads
# it and the approval queue stays a list. Forms, serializers and services all check it.
TEXT_MAX_LENGTH = 2000


def text_length_errors(**texts) -> dict:
    """``{field: [message]}`` for each text longer than ``TEXT_MAX_LENGTH`` (empty when all fit)."""
    return {
        name: [f"At most {TEXT_MAX_LENGTH:,} characters (this has {len(text):,})."]
        for name, text in texts.items() if text and len(text) > TEXT_MAX_LENGTH
    }


# Role matrix -------------------------------------------------------------------------------


class AccessLevel(models.IntegerChoices):
    """What a person may do with a dataset, each level including the ones below it."""

    NONE = 0, "Nothing"
    METADATA = 1, "See metadata"
    READ = 2, "Read"
    WRITE = 3, "Write"


class RolePermission(models.Model):
    """One cell of the role matrix: what a company role may do in one environment at one
    sensitivity tier, standing, and what it may ask for just in time."""

    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="permissions")
    environment = models.CharField(max_length=16)  # catalog.models.Environment
    sensitivity = models.PositiveSmallIntegerField()  # catalog.vocabulary.Sensitivity
    standing = models.PositiveSmallIntegerField(choices=AccessLevel.choices, default=AccessLevel.NONE)
    aggregated_only = models.BooleanField(
        default=False, help_text="Standing access covers only datasets tagged 'aggregated'."
    )
    jit_level = models.PositiveSmallIntegerField(
        choices=AccessLevel.choices, default=AccessLevel.NONE, help_text="The most that may be asked for just in time."
    )
    jit_max_hours = models.PositiveIntegerField(default=0)
    approvals_required = models.PositiveSmallIntegerField(default=1)
    security_approval_required = models.BooleanField(default=False)
    ticket_required = models.BooleanField(default=False)
    break_glass = models.BooleanField(default=False, help_text="May activate at once, with a reason, capped short.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["role__name", "environment", "sensitivity"]
        constraints = [
            models.UniqueConstraint(fields=["role", "environment", "sensitivity"], name="role_permission_cell"),
            models.CheckConstraint(condition=models.Q(standing__lte=3) & models.Q(jit_level__lte=3), name="role_permission_levels"),
            models.CheckConstraint(condition=models.Q(approvals_required__gte=1, approvals_required__lte=3),
                                   name="role_permission_approvals"),
        ]

    def __str__(self) -> str:
        return f"{self.role} / {self.environment} / tier {self.sensitivity}"


# Requests and grants -------------------------------------------------------------------------


class RequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


class AccessRequest(models.Model):
    """Someone asks for read or write access to a dataset (optionally some columns) for a while."""

    requester = models.ForeignKey(User, on_delete=models.PROTECT, related_name="access_requests")
    dataset = models.ForeignKey("catalog.Dataset", on_delete=models.PROTECT, related_name="access_requests")
    columns = models.JSONField(default=list, blank=True, help_text="Column names; empty means the whole dataset.")
    level = models.PositiveSmallIntegerField(choices=AccessLevel.choices)
    environment = models.CharField(max_length=16)
    sensitivity = models.PositiveSmallIntegerField(help_text="Tier of what the scope shows, when asked.")
    justification = models.TextField()
    ticket = models.CharField(max_length=128, blank=True)
    duration = models.DurationField()
    status = models.CharField(max_length=16, choices=RequestStatus.choices, default=RequestStatus.PENDING)
    approvals_required = models.PositiveSmallIntegerField(default=1)
    security_approval_required = models.BooleanField(default=False)
    is_break_glass = models.BooleanField(default=False)
    extends = models.ForeignKey(
        "Grant", on_delete=models.PROTECT, null=True, blank=True, related_name="extension_requests"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(help_text="Pending until then; expired if nobody decided.")
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "expires_at"]), models.Index(fields=["requester", "-created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["requester", "dataset"], condition=models.Q(status="pending", extends__isnull=True),
                name="one_pending_request_per_dataset",
            ),
        ]

    def __str__(self) -> str:
        return f"request #{self.pk} by {self.requester} for {self.dataset}"


class ReviewDecision(models.TextChoices):
    APPROVE = "approve", "Approved"
    DENY = "deny", "Denied"


class AccessReview(models.Model):
    """One reviewer's decision on a request (one standing review per reviewer). An approval given
    before the request's rules tightened is ``superseded``: it no longer counts, and its reviewer
    may approve again, seeing the new tier."""

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(User, on_delete=models.PROTECT, related_name="access_reviews")
    decision = models.CharField(max_length=8, choices=ReviewDecision.choices)
    reason = models.TextField(blank=True)
    as_security_engineer = models.BooleanField(default=False)
    superseded = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "reviewer"], condition=models.Q(superseded=False), name="one_review_per_reviewer"
            ),
        ]


class GrantStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


class Enforcement(models.TextChoices):
    """Where the warehouse stands for this grant (``not_managed``: no PostgreSQL connection)."""

    NOT_MANAGED = "not_managed", "Not enforced (no managed connection)"
    PENDING = "pending", "Waiting to apply"
    APPLIED = "applied", "Applied in the warehouse"
    APPLY_FAILED = "apply_failed", "Apply failed"
    REVOKE_PENDING = "revoke_pending", "Waiting to revoke"
    REVOKED = "revoked", "Revoked in the warehouse"
    REVOKE_FAILED = "revoke_failed", "Revoke failed"


class Grant(models.Model):
    """Time-bounded access that an approved (or break-glass) request produced."""

    request = models.OneToOneField(AccessRequest, on_delete=models.PROTECT, related_name="grant")
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="grants")
    dataset = models.ForeignKey("catalog.Dataset", on_delete=models.PROTECT, related_name="grants")
    columns = models.JSONField(default=list, blank=True)
    level = models.PositiveSmallIntegerField(choices=AccessLevel.choices)
    status = models.CharField(max_length=16, choices=GrantStatus.choices, default=GrantStatus.ACTIVE)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    is_break_glass = models.BooleanField(default=False)
    review_required = models.BooleanField(default=False, help_text="Break-glass: reviewed after the fact.")
    reviewed_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)
    revoked_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.TextField(blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    enforcement = models.CharField(max_length=16, choices=Enforcement.choices, default=Enforcement.NOT_MANAGED)
    enforcement_attempts = models.PositiveSmallIntegerField(default=0)
    enforcement_message = models.TextField(blank=True)
    enforced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at"]
        indexes = [
            models.Index(fields=["user", "dataset", "status"]),
            models.Index(fields=["status", "ends_at"]),
            models.Index(fields=["enforcement"]),
        ]
        constraints = [models.CheckConstraint(condition=models.Q(ends_at__gt=models.F("starts_at")), name="grant_ends_after_start")]

    def __str__(self) -> str:
        return f"grant #{self.pk}: {self.user} {self.get_level_display().lower()} {self.dataset}"


# Stewards ---------------------------------------------------------------------------------

STEWARD_PERMISSION = "steward_dataset"  # catalog.Dataset's custom permission


class DatasetUserObjectPermission(UserObjectPermissionBase):
    """A person's per-object permission on a dataset (django-guardian, direct foreign key):
    ``steward_dataset`` makes them one of its stewards."""

    content_object = models.ForeignKey("catalog.Dataset", on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        verbose_name = "dataset permission of a user"


class DatasetGroupObjectPermission(GroupObjectPermissionBase):
    """A group's per-object permission on a dataset: every member of a steward group (a team)
    is a steward."""

    content_object = models.ForeignKey("catalog.Dataset", on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        verbose_name = "dataset permission of a group"


# Audit ------------------------------------------------------------------------------------


class AuditEvent(models.Model):
    """Append-only, hash-chained record of every access decision and change.

    ``hash`` is SHA-256 over the previous event's hash and this event's canonical content, so
    editing, deleting or inserting an event breaks the chain from there on (``audit_verify``).
    """

    at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    dataset = models.ForeignKey("catalog.Dataset", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    remote_addr = models.CharField(max_length=64, blank=True)
    reason = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    previous_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["actor", "-id"]), models.Index(fields=["dataset", "-id"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} by {self.actor_name}"


class AuditChainHead(models.Model):
    """One row: the last event's id and hash. Appending locks it, so the chain stays a chain."""

    last_id = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)


class AuditCheckpoint(models.Model):
    """A verified point of the audit chain: ``audit_verify`` checked every event up to ``event_id``,
    whose hash was ``event_hash``. The next incremental check starts there.

    Checkpoints are chained like the events (``hash`` is SHA-256 over the previous checkpoint's
    hash and this one's content), append-only on PostgreSQL, and each is announced by an
    ``audit.verified`` event in the trail itself: an edited, deleted or forged checkpoint is
    found by ``audit_verify --full`` (and by the incremental check where it reads it).
    """

    at = models.DateTimeField()
    event_id = models.BigIntegerField(help_text="The last event verified.")
    event_hash = models.CharField(max_length=64, help_text="Its hash as verified.")
    checked = models.BigIntegerField(help_text="Events checked by the run that recorded it.")
    full = models.BooleanField(help_text="Recorded by a full check (else incremental).")
    previous_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"checkpoint #{self.pk} through event #{self.event_id}"


# Proposals: changes to what the decision reads ------------------------------------------------


class ProposalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPLIED = "applied", "Approved and applied"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"
    STALE = "stale", "Stale (the metadata changed since)"


class MetadataProposal(models.Model):
    """A change to metadata the access decision reads that would open access (a lower sensitivity,
    a weaker protection, other owners or stewards, a looser tag, another environment, residency or
    kind of store). It waits for someone other than the proposer to approve it, seeing the access it
    would open; only then is it applied.

    ``changes`` holds what changes, each with its value when proposed (``from``) and the proposed
    value (``to``); it is applied only while every ``from`` still holds.
    """

    dataset = models.ForeignKey(
        "catalog.Dataset", on_delete=models.CASCADE, null=True, blank=True, related_name="metadata_proposals"
    )
    store = models.ForeignKey(
        "catalog.DataStore", on_delete=models.CASCADE, null=True, blank=True, related_name="metadata_proposals"
    )
    proposer = models.ForeignKey(User, on_delete=models.PROTECT, related_name="metadata_proposals")
    changes = models.JSONField()
    impact = models.JSONField(default=list, help_text="Sentences: the access the change would open.")
    reason = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=ProposalStatus.choices, default=ProposalStatus.PENDING)
    # The rules of its review, fixed when proposed (from the most sensitive data it touches).
    sensitivity = models.PositiveSmallIntegerField()
    environment = models.CharField(max_length=16)
    approvals_required = models.PositiveSmallIntegerField(default=1)
    security_approval_required = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    outcome = models.TextField(blank=True, help_text="What was applied, or why not.")
    # The dataset's owners and stewards when it was proposed, less the proposer and the stewards the
    # proposer named: a proposer cannot appoint their own reviewer (security engineers and admins
    # review every proposal).
    reviewers = models.ManyToManyField(User, related_name="+", blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "-created_at"]), models.Index(fields=["dataset", "status"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(dataset__isnull=False) | models.Q(store__isnull=False), name="proposal_has_subject"
            ),
        ]

    def __str__(self) -> str:
        return f"proposal #{self.pk} on {self.dataset or self.store}"

    @property
    def subject_name(self) -> str:
        return self.dataset.qualified_name if self.dataset_id else f"store {self.store.name}"


class ProposalReview(models.Model):
    """One reviewer's decision on a proposal (one per reviewer)."""

    proposal = models.ForeignKey(MetadataProposal, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(User, on_delete=models.PROTECT, related_name="proposal_reviews")
    decision = models.CharField(max_length=8, choices=ReviewDecision.choices)
    reason = models.TextField(blank=True)
    as_security_engineer = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["proposal", "reviewer"], name="one_proposal_review_per_reviewer"),
        ]
