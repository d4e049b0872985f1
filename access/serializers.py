"""API representations of access. Keys are camelCase, like the rest of the API.

Levels are spelled by name ("none", "metadata", "read", "write") and sensitivity tiers by
their label ("Public" ... "Restricted"), never by their stored numbers.
"""

from collections.abc import Mapping

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from access.decisions import LIVE_STATUSES
from access.models import TEXT_MAX_LENGTH, AccessLevel, AccessRequest, AuditEvent, Grant, GrantStatus, RolePermission
from catalog.serializers import DatasetRefSerializer
from catalog.vocabulary import Sensitivity

LEVEL_NAMES = {AccessLevel.NONE: "none", AccessLevel.METADATA: "metadata", AccessLevel.READ: "read", AccessLevel.WRITE: "write"}
LEVELS_BY_NAME = {name: level for level, name in LEVEL_NAMES.items()}
LEVEL_NAME_CHOICES = list(LEVELS_BY_NAME)
REQUESTABLE_LEVELS = ["read", "write"]
TICKET_MAX_LENGTH = AccessRequest._meta.get_field("ticket").max_length


def level_name(level) -> str:
    return LEVEL_NAMES[AccessLevel(level)]


class LevelField(serializers.ChoiceField):
    """An access level by name; stored as its number."""

    def __init__(self, **kwargs):
        super().__init__(choices=LEVEL_NAME_CHOICES, **kwargs)

    def to_representation(self, value):
        return level_name(value)

    def to_internal_value(self, data):
        name = super().to_internal_value(str(data).lower() if isinstance(data, str) else data)
        return LEVELS_BY_NAME[name]


class SensitivityLabelField(serializers.CharField):
    def to_representation(self, value):
        return Sensitivity(value).label


class RejectUnknownFieldsMixin:
    """A misspelt field would otherwise be dropped silently: refuse it, naming it."""

    def to_internal_value(self, data):
        unknown = (
            {name: ["Unknown field."] for name in sorted(set(data) - set(self.fields))} if isinstance(data, Mapping) else {}
        )
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({**exc.detail, **unknown}) from None
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


# Role matrix ---------------------------------------------------------------------------------


class MatrixCellSerializer(serializers.ModelSerializer):
    role = serializers.CharField(source="role.slug", read_only=True)
    roleName = serializers.CharField(source="role.name", read_only=True)
    environment = serializers.CharField(read_only=True)
    sensitivity = SensitivityLabelField(read_only=True)
    standing = LevelField(help_text="What the role may do without asking.")
    aggregatedOnly = serializers.BooleanField(
        source="aggregated_only", help_text="Standing access covers only datasets tagged 'aggregated'."
    )
    jitLevel = LevelField(source="jit_level", help_text="The most that may be asked for just in time.")
    jitMaxHours = serializers.IntegerField(
        source="jit_max_hours", min_value=0,
        help_text="Hours; at most ACCESS_JIT_MAX_HOURS (720 by default, see docs/access.md).",
    )
    approvalsRequired = serializers.IntegerField(source="approvals_required", min_value=1, max_value=3)
    securityApprovalRequired = serializers.BooleanField(source="security_approval_required")
    ticketRequired = serializers.BooleanField(source="ticket_required")
    breakGlass = serializers.BooleanField(source="break_glass")
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)

    class Meta:
        model = RolePermission
        fields = [
            "id", "role", "roleName", "environment", "sensitivity", "standing", "aggregatedOnly", "jitLevel",
            "jitMaxHours", "approvalsRequired", "securityApprovalRequired", "ticketRequired", "breakGlass", "updatedAt",
        ]


class MatrixCellUpdateSerializer(RejectUnknownFieldsMixin, MatrixCellSerializer):
    """The editable fields of a cell; send only those that change."""

    def validate_jitMaxHours(self, value):
        limit = settings.ACCESS_JIT_MAX_HOURS
        if value > limit:
            raise serializers.ValidationError(f"At most {limit:,} hours (ACCESS_JIT_MAX_HOURS).")
        return value

    class Meta(MatrixCellSerializer.Meta):
        fields = [
            "standing", "aggregatedOnly", "jitLevel", "jitMaxHours", "approvalsRequired", "securityApprovalRequired",
            "ticketRequired", "breakGlass",
        ]


# Requests ------------------------------------------------------------------------------------


class ReviewSerializer(serializers.Serializer):
    reviewer = serializers.CharField(source="reviewer.username")
    decision = serializers.CharField()
    reason = serializers.CharField()
    asSecurityEngineer = serializers.BooleanField(source="as_security_engineer")
    superseded = serializers.BooleanField(help_text="Given before the request's rules tightened: no longer counts.")
    createdAt = serializers.DateTimeField(source="created_at")


def _hours(duration) -> float:
    return round(duration.total_seconds() / 3600, 2)


class AccessRequestSerializer(serializers.ModelSerializer):
    dataset = DatasetRefSerializer()
    requester = serializers.CharField(source="requester.username")
    requesterRoles = serializers.SerializerMethodField(help_text="The requester's company roles (slugs).")
    level = LevelField()
    sensitivity = SensitivityLabelField(help_text="Tier of what the scope shows, when asked.")
    durationHours = serializers.SerializerMethodField()
    approvalsRequired = serializers.IntegerField(source="approvals_required")
    securityApprovalRequired = serializers.BooleanField(source="security_approval_required")
    isBreakGlass = serializers.BooleanField(source="is_break_glass")
    extends = serializers.IntegerField(source="extends_id", allow_null=True, help_text="The grant this request extends.")
    reviews = ReviewSerializer(source="review_list", many=True)
    grant = serializers.SerializerMethodField(help_text="The grant the request produced, once approved.")
    createdAt = serializers.DateTimeField(source="created_at")
    expiresAt = serializers.DateTimeField(source="expires_at", help_text="Pending until then.")
    decidedAt = serializers.DateTimeField(source="decided_at", allow_null=True)

    class Meta:
        model = AccessRequest
        fields = [
            "id", "dataset", "requester", "requesterRoles", "level", "columns", "environment", "sensitivity",
            "justification", "ticket", "durationHours", "status", "approvalsRequired", "securityApprovalRequired",
            "isBreakGlass", "extends", "reviews", "grant", "createdAt", "expiresAt", "decidedAt",
        ]

    def get_requesterRoles(self, request) -> list[str]:
        roles = []
        for group in request.requester.groups.all():
            role = getattr(group, "company_role", None)
            if role is not None:
                roles.append(role.slug)
        return sorted(roles)

    def get_durationHours(self, request) -> float:
        return _hours(request.duration)

    def get_grant(self, request) -> int | None:
        grant = getattr(request, "grant", None)
        return grant.pk if grant is not None else None


class AccessRequestCreateSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    dataset = serializers.IntegerField(help_text="Dataset id.")
    level = serializers.ChoiceField(choices=REQUESTABLE_LEVELS)
    columns = serializers.ListField(
        child=serializers.CharField(), required=False, default=list, help_text="Column names; empty: the whole dataset."
    )
    durationHours = serializers.FloatField(source="duration", help_text="Up to the matrix's maximum for the scope.")
    justification = serializers.CharField(max_length=TEXT_MAX_LENGTH,
                                          help_text="Why you need it (at least 10 characters).")
    ticket = serializers.CharField(required=False, allow_blank=True, default="", max_length=TICKET_MAX_LENGTH,
                                   help_text="Required where the matrix asks.")


class ReasonSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=TEXT_MAX_LENGTH)


class NoteSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=TEXT_MAX_LENGTH)


# Grants --------------------------------------------------------------------------------------


def grant_effective_status(grant: Grant, now=None) -> str:
    """The status as a decision sees it now: a live grant past its end is expired even if no
    worker has marked it yet; a scheduled one whose start came is active."""
    now = now or timezone.now()
    if grant.status in LIVE_STATUSES:
        if grant.ends_at <= now:
            return GrantStatus.EXPIRED
        if grant.starts_at <= now:
            return GrantStatus.ACTIVE
    return grant.status


class GrantSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username")
    dataset = DatasetRefSerializer()
    level = LevelField()
    status = serializers.SerializerMethodField(help_text="scheduled, active, expired or revoked, as of now.")
    isLive = serializers.SerializerMethodField(help_text="Gives access at this moment.")
    startsAt = serializers.DateTimeField(source="starts_at")
    endsAt = serializers.DateTimeField(source="ends_at")
    secondsLeft = serializers.SerializerMethodField()
    request = serializers.IntegerField(source="request_id")
    isBreakGlass = serializers.BooleanField(source="is_break_glass")
    reviewRequired = serializers.BooleanField(source="review_required", help_text="Break-glass: reviewed after the fact.")
    reviewedBy = serializers.CharField(source="reviewed_by.username", allow_null=True)
    reviewedAt = serializers.DateTimeField(source="reviewed_at", allow_null=True)
    reviewNote = serializers.CharField(source="review_note")
    revokedBy = serializers.CharField(source="revoked_by.username", allow_null=True)
    revokedAt = serializers.DateTimeField(source="revoked_at", allow_null=True)
    revokeReason = serializers.CharField(source="revoke_reason")
    endedAt = serializers.DateTimeField(source="ended_at", allow_null=True)
    enforcementAttempts = serializers.IntegerField(source="enforcement_attempts")
    enforcementMessage = serializers.CharField(source="enforcement_message")
    enforcedAt = serializers.DateTimeField(source="enforced_at", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Grant
        fields = [
            "id", "user", "dataset", "level", "columns", "status", "isLive", "startsAt", "endsAt", "secondsLeft",
            "request", "isBreakGlass", "reviewRequired", "reviewedBy", "reviewedAt", "reviewNote", "revokedBy",
            "revokedAt", "revokeReason", "endedAt", "enforcement", "enforcementAttempts", "enforcementMessage",
            "enforcedAt", "createdAt",
        ]

    def get_status(self, grant) -> str:
        return grant_effective_status(grant)

    def get_isLive(self, grant) -> bool:
        return grant_effective_status(grant) == GrantStatus.ACTIVE

    def get_secondsLeft(self, grant) -> int:
        if grant_effective_status(grant) not in LIVE_STATUSES:
            return 0
        return max(0, int((grant.ends_at - timezone.now()).total_seconds()))


class GrantExtendSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    durationHours = serializers.FloatField(source="duration")
    justification = serializers.CharField(max_length=TEXT_MAX_LENGTH)
    ticket = serializers.CharField(required=False, allow_blank=True, default="", max_length=TICKET_MAX_LENGTH)


class BreakGlassSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    dataset = serializers.IntegerField(help_text="Dataset id.")
    level = serializers.ChoiceField(choices=REQUESTABLE_LEVELS)
    reason = serializers.CharField(max_length=TEXT_MAX_LENGTH, help_text="What the emergency is (at least 10 characters).")
    minutes = serializers.IntegerField(required=False, allow_null=True, help_text="Default and maximum: the break-glass cap.")
    columns = serializers.ListField(child=serializers.CharField(), required=False, default=list)


# Decisions, audit, reviews ---------------------------------------------------------------------


class DecisionSerializer(serializers.Serializer):
    dataset = serializers.IntegerField()
    action = serializers.CharField()
    columns = serializers.ListField(child=serializers.CharField())
    allowed = serializers.BooleanField()
    level = serializers.CharField(help_text="What the caller has on this scope now: none, metadata, read or write.")
    via = serializers.CharField(help_text='"standing", "owner", "grant #N", "admin" or "".')
    reason = serializers.CharField()
    grant = serializers.IntegerField(allow_null=True)


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_name")
    objectType = serializers.CharField(source="object_type")
    objectId = serializers.CharField(source="object_id")
    dataset = DatasetRefSerializer(allow_null=True)
    remoteAddr = serializers.CharField(source="remote_addr")
    previousHash = serializers.CharField(source="previous_hash")

    class Meta:
        model = AuditEvent
        fields = [
            "id", "at", "actor", "action", "objectType", "objectId", "dataset", "remoteAddr", "reason", "details",
            "previousHash", "hash",
        ]


class ChainReportSerializer(serializers.Serializer):
    intact = serializers.BooleanField()
    checked = serializers.IntegerField(help_text="Events checked.")
    firstBadId = serializers.IntegerField(source="first_bad_id", allow_null=True)
    problem = serializers.CharField()
    headId = serializers.IntegerField(source="head_id", help_text="The last event verified (when intact).")
    headHash = serializers.CharField(
        source="head_hash", help_text="Its hash: keep a copy outside the database to detect a rewritten chain."
    )


class ReviewRoleSerializer(serializers.Serializer):
    role = serializers.CharField(source="role.slug")
    roleName = serializers.CharField(source="role.name")
    level = serializers.SerializerMethodField()
    members = serializers.SerializerMethodField()

    def get_level(self, entry) -> str:
        return level_name(entry["level"])

    def get_members(self, entry) -> list[str]:
        return sorted(user.username for user in entry["members"])


class DatasetAccessReviewSerializer(serializers.Serializer):
    dataset = DatasetRefSerializer()
    roles = ReviewRoleSerializer(many=True, help_text="Standing read or write access through company roles.")
    grants = GrantSerializer(many=True, help_text="Live grants.")
    lastConfirmedAt = serializers.DateTimeField(allow_null=True)
    lastConfirmedBy = serializers.CharField(allow_null=True)


class AccessReviewConfirmedSerializer(serializers.Serializer):
    dataset = DatasetRefSerializer()
    confirmedAt = serializers.DateTimeField()
    confirmedBy = serializers.CharField()
    note = serializers.CharField()


# Stewards ------------------------------------------------------------------------------------


class StewardUserSerializer(serializers.Serializer):
    username = serializers.CharField()
    displayName = serializers.CharField(source="display_name")


class StewardGroupSerializer(serializers.Serializer):
    name = serializers.CharField()
    members = serializers.SerializerMethodField(help_text="Usernames of the group's active members.")

    def get_members(self, group) -> list[str]:
        return sorted(user.username for user in group.user_set.all() if user.is_active)


class DatasetStewardsSerializer(serializers.Serializer):
    dataset = DatasetRefSerializer()
    owners = serializers.SerializerMethodField(help_text="Usernames of the owners (they approve like stewards).")
    users = StewardUserSerializer(many=True, help_text="People holding the steward permission on the dataset.")
    groups = StewardGroupSerializer(many=True, help_text="Groups whose members are all stewards.")
    canChange = serializers.BooleanField(help_text="Whether the caller may add or remove stewards.")

    def get_owners(self, value) -> list[str]:
        return [user.username for user in value["owners"]]


class StewardAddSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """One of ``user`` (a username) or ``group`` (a group name)."""

    user = serializers.CharField(required=False, allow_blank=True, default="")
    group = serializers.CharField(required=False, allow_blank=True, default="")

    def validate(self, attrs):
        if bool(attrs["user"].strip()) == bool(attrs["group"].strip()):
            raise serializers.ValidationError({"user": ["Name one user or one group."]})
        return attrs


# Proposals --------------------------------------------------------------------------------------


class ProposalReviewSerializer(serializers.Serializer):
    reviewer = serializers.CharField(source="reviewer.username")
    decision = serializers.CharField()
    reason = serializers.CharField()
    asSecurityEngineer = serializers.BooleanField(source="as_security_engineer")
    createdAt = serializers.DateTimeField(source="created_at")


class ProposalSerializer(serializers.Serializer):
    """A proposed change to metadata the access decision reads, with the access it would open."""

    id = serializers.IntegerField()
    dataset = DatasetRefSerializer(allow_null=True)
    store = serializers.SerializerMethodField()
    proposer = serializers.CharField(source="proposer.username")
    status = serializers.CharField()
    summary = serializers.SerializerMethodField()
    changes = serializers.DictField(help_text=(
        'What changes, each as {"from": ..., "to": ...}: "columns" (per column sensitivity and protection), '
        '"owners", "tags" ({"add": [...]}), "stewards" ({"add": {"user"|"group": name}}), and for stores '
        '"environment", "residency", "kind".'
    ))
    impact = serializers.ListField(child=serializers.CharField(), help_text="The access it would open, in sentences.")
    reason = serializers.CharField()
    sensitivity = SensitivityLabelField()
    environment = serializers.CharField()
    approvalsRequired = serializers.IntegerField(source="approvals_required")
    securityApprovalRequired = serializers.BooleanField(source="security_approval_required")
    reviews = ProposalReviewSerializer(source="review_list", many=True)
    outcome = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")
    decidedAt = serializers.DateTimeField(source="decided_at", allow_null=True)

    def get_store(self, proposal) -> str:
        return proposal.store.name if proposal.store_id else proposal.dataset.store.name

    def get_summary(self, proposal) -> str:
        from access.proposals import proposal_summary

        return proposal_summary(proposal)


class ProposalRefSerializer(serializers.Serializer):
    """The pending proposal a write left behind: what was not applied, and where it waits."""

    id = serializers.IntegerField()
    status = serializers.CharField()
    summary = serializers.SerializerMethodField()
    impact = serializers.ListField(child=serializers.CharField())
    url = serializers.SerializerMethodField()

    def get_summary(self, proposal) -> str:
        from access.proposals import proposal_summary

        return proposal_summary(proposal)

    def get_url(self, proposal) -> str:
        from django.urls import reverse

        return reverse("access-api:proposal-detail", args=[proposal.pk])


class EnforcementStatementSerializer(serializers.Serializer):
    text = serializers.CharField(help_text="SQL in `dialect`, or a JSON document when `dialect` is json; redacted "
                                           "when it carries a key.")
    purpose = serializers.CharField()
    dialect = serializers.CharField(help_text="mysql, postgres, snowflake, bigquery or json")
    redacted = serializers.BooleanField()


class EnforcementPlanSerializer(serializers.Serializer):
    dataset = serializers.IntegerField()
    qualifiedName = serializers.CharField()
    platform = serializers.CharField()
    enforced = serializers.BooleanField(help_text="False for platforms the catalog does not enforce (no statements).")
    appliedHere = serializers.BooleanField(help_text="The catalog applies it itself (a PostgreSQL or MariaDB/MySQL "
                                                     "store with a connection); otherwise it is a plan to apply.")
    statements = EnforcementStatementSerializer(many=True)
    notes = serializers.ListField(child=serializers.CharField())
