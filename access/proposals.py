"""Proposals: changes to the metadata that the access decision reads.

The decision trusts a column's sensitivity and protection, a dataset's owners, stewards and the
tags the role matrix reads, and a store's environment (residency and kind place data too). A
change that would open access (a lower sensitivity, a weaker protection, other owners, a new
steward, a looser tag, another environment, residency or kind) is not applied: it becomes a
:class:`MetadataProposal` that someone other than the proposer approves, seeing in words the access
it would open. A security engineer must approve where the data is Sensitive or Restricted and for
any store change; Restricted data in prod needs two approvals, as its grants do. A change that
tightens applies at once. Every step is audited in the transaction of the change.
"""

from dataclasses import replace

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from access import decisions, policies
from access.audit import audit_record
from access.models import (
    STEWARD_PERMISSION,
    AccessLevel,
    MetadataProposal,
    ProposalReview,
    ProposalStatus,
    ReviewDecision,
    Role,
    RolePermission,
    User,
    text_length_errors,
)
from catalog.models import Dataset, DataStore, Environment, StoreKind
from catalog.vocabulary import Protection, Sensitivity

MATRIX_TAGS = frozenset({decisions.AGGREGATED_TAG})  # tags the role matrix reads
GUARDED_STORE_FIELDS = ("environment", "residency", "kind")
_SENSITIVITY_BY_LABEL = {label: value for value, label in Sensitivity.choices}
_PROTECTION_LABELS = dict(Protection.choices)
_PROTECTION_BY_LABEL = {label: value for value, label in Protection.choices}


# Registrations: what a new version may change at once, and what it proposes ------------------


def _column_history(dataset: Dataset, names: set[str]) -> dict[str, tuple[int, str]]:
    """The last sensitivity and protection recorded for columns that are no longer in the
    dataset, so that dropping a column and adding it back lower is still a downgrade."""
    found: dict[str, tuple[int, str]] = {}
    for columns in dataset.versions.order_by("-number").values_list("columns", flat=True).iterator(chunk_size=20):
        for snapshot in columns:
            key = snapshot["name"].lower()
            if key in names and key not in found:
                found[key] = (_SENSITIVITY_BY_LABEL[snapshot["sensitivity"]], _PROTECTION_BY_LABEL[snapshot["protection"]])
        if len(found) == len(names):
            break
    return found


def registration_hold_back(*, dataset: Dataset, registration):
    """Split a registration of an existing dataset into what applies now and what is proposed.

    Returns ``(registration, held, tightened, floor)``: the registration with every lowered
    sensitivity and every removed or changed protection put back to its current value, the column
    changes held back (for a proposal), the column changes that tighten (applied, audited), and the
    dataset-level change held back when the version would lower the dataset's tier anyway (columns
    dropped), as ``(tier kept, change)`` or None.

    A dataset nobody classified counts as the configured default tier: declaring a column lower
    than that is a downgrade too.
    """
    default = None if dataset.classified else decisions.dataset_tier(dataset)
    current = ({column.name.lower(): (column.sensitivity, column.protection) for column in dataset.columns.all()}
               if default is None else {})
    added = {spec.name.lower() for spec in registration.columns} - set(current)
    history = _column_history(dataset, added) if added and dataset.current_version_id and default is None else {}
    specs, held, tightened = [], [], []
    for spec in registration.columns:
        key = spec.name.lower()
        before = current.get(key) or history.get(key) or ((default, Protection.NONE) if default is not None else None)
        if before is None:
            specs.append(spec)
            continue
        old_sensitivity, old_protection = before
        hold, tighten, kept = {}, {}, {}
        if spec.sensitivity < old_sensitivity:
            hold["sensitivity"] = _change(Sensitivity(old_sensitivity).label, Sensitivity(spec.sensitivity).label)
            kept["sensitivity"] = Sensitivity(old_sensitivity)
        elif spec.sensitivity > old_sensitivity and key in current:
            tighten["sensitivity"] = _change(Sensitivity(old_sensitivity).label, Sensitivity(spec.sensitivity).label)
        if old_protection != Protection.NONE and spec.protection != old_protection:
            # Removing a protection, or swapping it for another: reviewed.
            hold["protection"] = _change(_PROTECTION_LABELS[old_protection], _PROTECTION_LABELS[spec.protection])
            kept["protection"] = Protection(old_protection)
        elif old_protection == Protection.NONE and spec.protection != Protection.NONE and key in current:
            tighten["protection"] = _change(_PROTECTION_LABELS[old_protection], _PROTECTION_LABELS[spec.protection])
        if hold:
            held.append({"name": spec.name, **hold})
        if tighten:
            tightened.append({"name": spec.name, **tighten})
        specs.append(replace(spec, **kept) if kept else spec)
    if held:
        registration = replace(registration, columns=specs, snapshots=[spec.snapshot() for spec in specs])
    floor = None
    tier_now = decisions.dataset_tier(dataset) if dataset.current_version_id or default is not None else None
    tier_after = max((spec.sensitivity for spec in specs), default=Sensitivity.PUBLIC)
    if tier_now is not None and tier_after < tier_now:
        removed = sorted(name for name, (level, _) in current.items()
                         if level > tier_after and name not in {spec.name.lower() for spec in specs})
        floor = (tier_now, {"sensitivity": _change(Sensitivity(tier_now).label, Sensitivity(tier_after).label),
                            "removed": removed})
    return registration, held, tightened, floor


def _change(before, after) -> dict:
    return {"from": before, "to": after}


def owners_change(*, principal, dataset: Dataset, owners) -> dict | None:
    """The owners change a registration asks for, as a proposal's ``owners`` entry, or None if
    the owners stay. Only owners, registrars and admins may name owners; stewards may not."""
    current = sorted(user.username for user in dataset.owners.all())
    wanted = sorted(user.username for user in owners)
    if current == wanted:
        return None
    if not policies.can_change_owners(principal, dataset):
        raise PermissionDenied("Only the dataset's owners, registrars and admins name its owners; stewards may not.")
    return _change(current, wanted)


def tags_split(*, dataset: Dataset, tags: list[str]) -> tuple[list[str], dict | None, dict | None]:
    """``(tags now, held, tightened)``: a tag the role matrix reads is added only by a proposal;
    removing one, or changing any other tag, applies at once."""
    current = list(dataset.tags or [])
    # Spelling does not matter: "Aggregated" would otherwise slip past as an ordinary tag.
    had = {tag.strip().lower() for tag in current}
    wanted = {tag.strip().lower() for tag in tags}
    added = sorted((wanted - had) & MATRIX_TAGS)
    removed = sorted((had - wanted) & MATRIX_TAGS)
    now = [tag for tag in tags if tag.strip().lower() not in added]
    return now, ({"add": added} if added else None), ({"remove": removed} if removed else None)


# Creating proposals ---------------------------------------------------------------------------


def _tier_of(dataset: Dataset) -> int:
    """The tier the decision gives the dataset (unclassified data counts as the configured default)."""
    return decisions.dataset_tier(dataset)


def _review_rules(tier: int, environments, *, store_change: bool) -> dict:
    return {
        "sensitivity": tier,
        "approvals_required": 2 if tier >= Sensitivity.RESTRICTED and Environment.PROD in environments else 1,
        "security_approval_required": store_change or tier >= Sensitivity.SENSITIVE,
    }


def proposal_create(*, principal, changes: dict, dataset: Dataset | None = None, store: DataStore | None = None,
                    reason: str = "", remote_addr: str = "") -> MetadataProposal:
    """Record a proposed change (inside the caller's transaction), with the access it would open.

    The same change proposed again for the same subject while pending is the same proposal.
    """
    if not getattr(principal, "pk", None):
        raise PermissionDenied("Only a person or a service account can propose a change.")
    pending = MetadataProposal.objects.filter(
        dataset=dataset, store=store, status=ProposalStatus.PENDING, changes=changes
    ).first() if dataset is not None else MetadataProposal.objects.filter(
        store=store, dataset=None, status=ProposalStatus.PENDING, changes=changes
    ).first()
    if pending is not None:
        return pending
    if dataset is not None:
        tiers = ([_tier_of(dataset)] if ("owners" in changes or "tags" in changes or "stewards" in changes
                                         or "dataset" in changes) else [])
        tiers += [_SENSITIVITY_BY_LABEL[column["sensitivity"]["from"]] for column in changes.get("columns", [])
                  if "sensitivity" in column]
        # A protection change is judged by the tier of the column it protects.
        levels = {column.name.lower(): column.sensitivity for column in dataset.columns.all()}
        tiers += [levels.get(column["name"].lower(), _tier_of(dataset)) for column in changes.get("columns", [])]
        tier = max(tiers, default=_tier_of(dataset))
        environment = dataset.store.environment
        rules = _review_rules(tier, {environment}, store_change=False)
    else:
        tier = store.datasets.aggregate(top=Max("sensitivity"))["top"] or Sensitivity.PUBLIC
        environment = store.environment
        moved_to = changes.get("environment", {}).get("to", environment)
        rules = _review_rules(tier, {environment, moved_to}, store_change=True)
    if getattr(principal, "is_service_account", False):
        # A token is nobody in particular: whoever runs the pipeline may also own the dataset, so a
        # security engineer, not an owner, answers for what a pipeline proposes.
        rules["security_approval_required"] = True
    proposal = MetadataProposal(
        dataset=dataset, store=store if dataset is None else None, proposer=principal, changes=changes,
        reason=(reason or "").strip(), environment=environment, **rules,
    )
    proposal.impact = proposal_impact(proposal)
    proposal.save()
    if dataset is not None:
        proposal.reviewers.set(_dataset_reviewers(dataset, principal))
    audit_record(actor=principal, action="proposal.created", obj=proposal, dataset=dataset, remote_addr=remote_addr,
                 reason=proposal.reason, details={"subject": proposal.subject_name, "changes": changes,
                                                  "impact": proposal.impact})
    from access import tasks  # reviewers hear of it after commit

    proposal_id = proposal.pk
    transaction.on_commit(lambda: tasks.access_notify.delay("proposal_created", proposal_id=proposal_id), robust=True)
    return proposal


def _dataset_reviewers(dataset: Dataset, proposer) -> list[int]:
    """Owners and stewards (members of steward groups included) who may review a proposal on the
    dataset: not the proposer, and not whoever the proposer named steward."""
    from django.contrib.auth.models import Group

    from access.models import AuditEvent, DatasetGroupObjectPermission, DatasetUserObjectPermission

    named = AuditEvent.objects.filter(action="steward.added", dataset=dataset, actor=proposer).values_list(
        "details", flat=True)
    named_users = {entry.get("user") for entry in named if entry.get("user")}
    named_groups = {entry.get("group") for entry in named if entry.get("group")}
    groups = Group.objects.filter(pk__in=DatasetGroupObjectPermission.objects.filter(
        content_object=dataset, permission__codename=STEWARD_PERMISSION).values("group_id")).exclude(name__in=named_groups)
    ids = set(dataset.owners.values_list("pk", flat=True))
    ids |= set(User.objects.filter(pk__in=DatasetUserObjectPermission.objects.filter(
        content_object=dataset, permission__codename=STEWARD_PERMISSION).values("user_id")).exclude(
        username__in=named_users).values_list("pk", flat=True))
    ids |= set(User.objects.filter(groups__in=groups).values_list("pk", flat=True))
    ids.discard(proposer.pk)
    return sorted(ids)


def store_change_split(*, store: DataStore, fields: dict) -> tuple[dict, dict]:
    """``(applied now, proposed)`` for a change of an existing store: its environment, residency and
    kind place its data, so changing them is proposed; the rest applies at once."""
    proposed = {}
    for name in GUARDED_STORE_FIELDS:
        if name in fields:
            value = fields[name]
            if name == "residency":
                value = (value or "").strip().upper()
            if value != getattr(store, name):
                proposed[name] = _change(getattr(store, name), value)
    if "environment" in proposed and proposed["environment"]["to"] not in Environment.values:
        raise ValidationError({"environment": [f"Unknown environment '{proposed['environment']['to']}'."]})
    if "kind" in proposed and proposed["kind"]["to"] not in StoreKind.values:
        raise ValidationError({"kind": [f"Unknown kind '{proposed['kind']['to']}'."]})
    applied = {name: value for name, value in fields.items() if name not in proposed}
    return applied, proposed


# What a change would open ---------------------------------------------------------------------


class _Matrix:
    """Every role's cells, read once, to say what a change would give each role."""

    def __init__(self):
        self.roles = list(Role.objects.order_by("name"))
        self.cells = {(cell.role_id, cell.environment, cell.sensitivity): cell for cell in RolePermission.objects.all()}

    def standing(self, role, environment, tier, aggregated) -> int:
        cell = self.cells.get((role.pk, environment, tier))
        if cell is None or (cell.aggregated_only and not aggregated):
            return AccessLevel.NONE
        return cell.standing

    def request_rules(self, environment, tier) -> tuple[int, bool]:
        """The strictest rules any role's cell sets for asking at this place and tier."""
        cells = [cell for (_, env, level), cell in self.cells.items() if env == environment and level == tier and cell.jit_level]
        return (max((cell.approvals_required for cell in cells), default=1),
                any(cell.security_approval_required for cell in cells))


LEVEL_VERBS = {AccessLevel.NONE: "nothing", AccessLevel.METADATA: "see the metadata of",
               AccessLevel.READ: "read", AccessLevel.WRITE: "write"}


def _gains(matrix, before, after) -> list[str]:
    """``before``/``after``: (environment, tier, aggregated). One phrase per role that gains."""
    phrases = []
    for role in matrix.roles:
        old, new = matrix.standing(role, *before), matrix.standing(role, *after)
        if new > old:
            phrases.append((role.name, new, old))
    return phrases


def _sentence(gains, what: str) -> list[str]:
    by_levels = {}
    for name, new, old in gains:
        by_levels.setdefault((new, old), []).append(name)
    return [
        f"{', '.join(names)} could {LEVEL_VERBS[new]} {what} without approval (today: {LEVEL_VERBS[old]})."
        for (new, old), names in sorted(by_levels.items(), reverse=True)
    ]


def _rules_text(rules) -> str:
    approvals, security = rules
    text = f"{approvals} approval{'s' if approvals != 1 else ''}"
    return text + (", one from a security engineer" if security else "")


def proposal_impact(proposal: MetadataProposal) -> list[str]:
    """The access the proposed change would open, in sentences for its reviewers."""
    matrix = _Matrix()
    changes, sentences = proposal.changes, []
    if proposal.dataset_id:
        dataset = proposal.dataset
        environment = dataset.store.environment
        aggregated_before = decisions.is_aggregated(dataset)
        aggregated_after = aggregated_before or decisions.AGGREGATED_TAG in changes.get("tags", {}).get("add", [])
        tiers = {column.name: column.sensitivity for column in dataset.columns.all()}
        lowered = {column["name"]: _SENSITIVITY_BY_LABEL[column["sensitivity"]["to"]]
                   for column in changes.get("columns", []) if "sensitivity" in column}
        tier_before = _tier_of(dataset)
        tier_after = max({**tiers, **lowered}.values(), default=tier_before)
        if "dataset" in changes:
            tier_after = min(tier_after, _SENSITIVITY_BY_LABEL[changes["dataset"]["sensitivity"]["to"]])
            removed = changes["dataset"].get("removed") or []
            sentences.append(f"Columns {', '.join(removed)} were dropped: the dataset stays "
                             f"{Sensitivity(tier_before).label} until this is approved." if removed else
                             f"The dataset stays {Sensitivity(tier_before).label} until this is approved.")
        elif not dataset.classified:
            tier_after = max(tier_after, tier_before)
        sentences += _sentence(_gains(matrix, (environment, tier_before, aggregated_before),
                                      (environment, tier_after, aggregated_after)), "the whole dataset")
        if tier_after < tier_before:
            sentences.append(f"The dataset would be {Sensitivity(tier_after).label} (today {Sensitivity(tier_before).label}).")
        for column in changes.get("columns", []):
            name = column["name"]
            if "sensitivity" in column:
                old, new = (_SENSITIVITY_BY_LABEL[column["sensitivity"][key]] for key in ("from", "to"))
                sentences += _sentence(_gains(matrix, (environment, old, aggregated_after), (environment, new, aggregated_after)),
                                       f"column {name}")
                rules_old, rules_new = matrix.request_rules(environment, old), matrix.request_rules(environment, new)
                if rules_new != rules_old:
                    sentences.append(f"Requests for column {name} would need {_rules_text(rules_new)} "
                                     f"(today {_rules_text(rules_old)}).")
            if "protection" in column:
                sentences.append(f"Column {name} would be recorded as {column['protection']['to']} "
                                 f"(today {column['protection']['from']}): readers and lineage would treat its values so.")
        owners = changes.get("owners")
        if owners:
            for username in sorted(set(owners["to"]) - set(owners["from"])):
                sentences.append(f"{username} would become an owner: sees its metadata, approves its access requests "
                                 f"and runs its access review.")
            for username in sorted(set(owners["from"]) - set(owners["to"])):
                sentences.append(f"{username} would no longer be an owner (no more approvals or access review).")
        stewards = changes.get("stewards", {}).get("add")
        if stewards:
            who = stewards.get("user") or f"every member of group {stewards.get('group')}"
            sentences.append(f"{who} would become a steward: sees its metadata, approves its access requests and "
                             f"edits it.")
        if changes.get("tags", {}).get("add"):
            sentences.append("Tag 'aggregated': roles whose standing access covers only aggregated data would get it here.")
    else:
        store = proposal.store
        counts = dict(store.datasets.values_list("sensitivity").annotate(n=Count("id")))
        environment = changes.get("environment")
        if environment:
            old_env, new_env = environment["from"], environment["to"]
            for tier in sorted(counts, reverse=True):
                what = f"its {counts[tier]} {Sensitivity(tier).label} dataset{'s' if counts[tier] != 1 else ''}"
                sentences += _sentence(_gains(matrix, (old_env, tier, False), (new_env, tier, False)), what)
                rules_old, rules_new = matrix.request_rules(old_env, tier), matrix.request_rules(new_env, tier)
                if rules_new != rules_old:
                    sentences.append(f"Requests for its {Sensitivity(tier).label} data would need {_rules_text(rules_new)} "
                                     f"(today {_rules_text(rules_old)}).")
        for name in ("residency", "kind"):
            if name in changes:
                sentences.append(f"Its {sum(counts.values())} dataset(s) would be labelled {name} "
                                 f"'{changes[name]['to'] or '(none)'}' (today '{changes[name]['from'] or '(none)'}'): "
                                 f"where data may live and how it is segmented follow this label.")
    if not any(" could " in sentence for sentence in sentences):
        sentences.append("No role would gain standing access through the role matrix.")
    return sentences


# Reviewing ------------------------------------------------------------------------------------


def _locked(proposal) -> MetadataProposal:
    return MetadataProposal.objects.select_for_update(of=("self",)).select_related("dataset__store", "store", "proposer").get(
        pk=proposal.pk
    )


def proposal_review(*, principal, proposal: MetadataProposal, approve: bool, reason: str = "",
                    remote_addr: str = "") -> MetadataProposal:
    """One reviewer's decision. Enough approvals (with a security engineer's where needed) apply the
    change; one rejection rejects it. Nobody reviews their own proposal."""
    reason = (reason or "").strip()
    if errors := text_length_errors(reason=reason):
        raise ValidationError(errors)
    with transaction.atomic():
        # The subject first, as registration and store changes lock it: one lock order.
        subject = proposal.dataset_id and Dataset.objects.select_for_update(of=("self",)).filter(pk=proposal.dataset_id).first()
        if not proposal.dataset_id:
            DataStore.objects.select_for_update().filter(pk=proposal.store_id).first()
        proposal = _locked(proposal)
        if proposal.status != ProposalStatus.PENDING:
            raise ValidationError({"status": [f"This proposal is already {proposal.get_status_display().lower()}."]})
        if proposal.proposer_id == principal.pk:
            raise PermissionDenied("Nobody may review their own proposal.")
        if not policies.can_review_proposal(principal, proposal):
            raise PermissionDenied("Only the dataset's owners and stewards, security engineers and admins review this "
                                   "change (security engineers and admins for stores).")
        if proposal.reviews.filter(reviewer=principal).exists():
            raise ValidationError({"review": ["You already reviewed this proposal."]})
        if not approve and not reason:
            raise ValidationError({"reason": ["Say why you reject it."]})
        as_security = decisions.is_security_engineer(principal)
        ProposalReview.objects.create(proposal=proposal, reviewer=principal, reason=reason, as_security_engineer=as_security,
                                      decision=ReviewDecision.APPROVE if approve else ReviewDecision.DENY)
        audit_record(actor=principal, action="proposal.reviewed", obj=proposal, dataset=proposal.dataset,
                     reason=reason, remote_addr=remote_addr,
                     details={"decision": "approve" if approve else "reject", "as_security_engineer": as_security})
        now = timezone.now()
        if not approve:
            proposal.status, proposal.decided_at, proposal.outcome = ProposalStatus.REJECTED, now, reason
            proposal.save(update_fields=["status", "decided_at", "outcome"])
            audit_record(actor=principal, action="proposal.rejected", obj=proposal, dataset=proposal.dataset,
                         reason=reason, remote_addr=remote_addr)
            _notify_decided(proposal)
            return proposal
        approvals = list(proposal.reviews.filter(decision=ReviewDecision.APPROVE))
        enough = len(approvals) >= proposal.approvals_required
        security_ok = not proposal.security_approval_required or any(review.as_security_engineer for review in approvals)
        if not (enough and security_ok):
            return proposal
        _apply(proposal, principal, now, subject or None, remote_addr=remote_addr,
               approvers=[review.reviewer_id for review in approvals])
        _notify_decided(proposal)
    return proposal


def _notify_decided(proposal) -> None:
    from access import tasks

    proposal_id = proposal.pk
    transaction.on_commit(lambda: tasks.access_notify.delay("proposal_decided", proposal_id=proposal_id), robust=True)


def proposal_cancel(*, principal, proposal: MetadataProposal, remote_addr: str = "") -> MetadataProposal:
    """The proposer withdraws a pending proposal."""
    with transaction.atomic():
        proposal = _locked(proposal)
        if proposal.proposer_id != principal.pk:
            raise PermissionDenied("Only the proposer may cancel a proposal.")
        if proposal.status != ProposalStatus.PENDING:
            raise ValidationError({"status": [f"This proposal is already {proposal.get_status_display().lower()}."]})
        proposal.status, proposal.decided_at = ProposalStatus.CANCELLED, timezone.now()
        proposal.save(update_fields=["status", "decided_at"])
        audit_record(actor=principal, action="proposal.cancelled", obj=proposal, dataset=proposal.dataset,
                     remote_addr=remote_addr)
    return proposal


# Applying -------------------------------------------------------------------------------------


def _stale(proposal, dataset) -> str:
    """Why the proposal no longer fits the metadata it was made against, or ""."""
    changes = proposal.changes
    if dataset is not None:
        columns = {column.name: column for column in dataset.columns.all()}
        for change in changes.get("columns", []):
            column = columns.get(change["name"])
            if column is None:
                return f"column {change['name']} is gone"
            if "sensitivity" in change and Sensitivity(column.sensitivity).label != change["sensitivity"]["from"]:
                return f"column {change['name']} is {Sensitivity(column.sensitivity).label} now"
            if "protection" in change and _PROTECTION_LABELS[column.protection] != change["protection"]["from"]:
                return f"column {change['name']} is {_PROTECTION_LABELS[column.protection]} now"
        if "owners" in changes and sorted(user.username for user in dataset.owners.all()) != changes["owners"]["from"]:
            return "its owners changed"
        if "dataset" in changes:
            wanted = _SENSITIVITY_BY_LABEL[changes["dataset"]["sensitivity"]["to"]]
            if Sensitivity(dataset.sensitivity).label != changes["dataset"]["sensitivity"]["from"]:
                return f"the dataset is {Sensitivity(dataset.sensitivity).label} now"
            if any(column.sensitivity > wanted for column in columns.values()):
                return f"a column above {Sensitivity(wanted).label} is back"
        return ""
    store = proposal.store
    for name in GUARDED_STORE_FIELDS:
        if name in changes and getattr(store, name) != changes[name]["from"]:
            return f"its {name} is '{getattr(store, name)}' now"
    return ""


def _apply(proposal, principal, now, dataset, *, remote_addr: str, approvers: list[int]) -> None:
    """Apply an approved proposal if the metadata is still as it was proposed against; otherwise
    it is stale and nothing changes."""
    problem = _stale(proposal, dataset)
    if problem:
        proposal.status, proposal.decided_at = ProposalStatus.STALE, now
        proposal.outcome = f"Not applied: {problem} since it was proposed. Propose it again if it is still right."
        proposal.save(update_fields=["status", "decided_at", "outcome"])
        audit_record(actor=principal, action="proposal.stale", obj=proposal, dataset=dataset,
                     remote_addr=remote_addr, reason=proposal.outcome)
        return
    changes, applied = proposal.changes, []
    if dataset is not None:
        from catalog.services import dataset_columns_reclassify  # the catalog writes its own versions

        if changes.get("columns"):
            dataset_columns_reclassify(
                principal=principal, dataset=dataset, registered_by=f"proposal #{proposal.pk}",
                changes={column["name"]: {key: value["to"] for key, value in column.items() if key != "name"}
                         for column in changes["columns"]},
                remote_addr=remote_addr, proposal=proposal,
            )
            applied.append("classification")
        if changes.get("dataset"):
            tier = _SENSITIVITY_BY_LABEL[changes["dataset"]["sensitivity"]["to"]]
            Dataset.objects.filter(pk=dataset.pk).update(sensitivity=tier, updated_at=now)
            audit_record(actor=principal, action="dataset.classification_changed", obj=dataset, dataset=dataset,
                         remote_addr=remote_addr, details={"dataset": changes["dataset"], "proposal": proposal.pk})
            applied.append("dataset tier")
        if changes.get("owners"):
            users = list(User.objects.filter(username__in=changes["owners"]["to"], is_active=True))
            dataset.owners.set(users)
            audit_record(actor=principal, action="dataset.owners_changed", obj=dataset, dataset=dataset,
                         remote_addr=remote_addr, details={**changes["owners"], "proposal": proposal.pk})
            applied.append("owners")
        if changes.get("tags", {}).get("add"):
            dataset.tags = list(dict.fromkeys([*(dataset.tags or []), *changes["tags"]["add"]]))
            dataset.save(update_fields=["tags", "updated_at"])
            audit_record(actor=principal, action="dataset.tags_changed", obj=dataset, dataset=dataset,
                         remote_addr=remote_addr, details={"add": changes["tags"]["add"], "proposal": proposal.pk})
            applied.append("tags")
        if changes.get("stewards", {}).get("add"):
            from django.contrib.auth.models import Group
            from guardian.shortcuts import assign_perm

            target = changes["stewards"]["add"]
            holder = (User.objects.filter(username=target["user"], is_active=True).first() if "user" in target
                      else Group.objects.filter(name=target.get("group")).first())
            if holder is not None:
                assign_perm(STEWARD_PERMISSION, holder, dataset)
                audit_record(actor=principal, action="steward.added", obj=dataset, dataset=dataset,
                             remote_addr=remote_addr, details={**target, "proposal": proposal.pk})
                applied.append("stewards")
    else:
        store = proposal.store
        for name in GUARDED_STORE_FIELDS:
            if name in changes:
                setattr(store, name, changes[name]["to"])
        store.full_clean()
        store.save()
        audit_record(actor=principal, action="store.changed", obj=store, remote_addr=remote_addr,
                     details={"store": store.name, "changes": changes, "proposal": proposal.pk})
        applied.append("store")
    proposal.status, proposal.decided_at = ProposalStatus.APPLIED, now
    proposal.outcome = f"Applied ({', '.join(applied)})."
    proposal.save(update_fields=["status", "decided_at", "outcome"])
    audit_record(actor=principal, action="proposal.applied", obj=proposal, dataset=dataset, remote_addr=remote_addr,
                 details={"changes": changes, "approvals": approvers})


def proposals_viewed(*, principal, proposals, remote_addr: str = "", via: str) -> None:
    """Audit the Restricted columns that a page or an answer listing these proposals names (a
    proposal's diff shows their names and tiers), as the dataset page does for its columns."""
    from access.grants import restricted_columns_viewed

    restricted = Sensitivity.RESTRICTED.label
    shown = {}
    for proposal in proposals:
        for column in proposal.changes.get("columns", []) if proposal.dataset_id else []:
            if restricted in (column.get("sensitivity", {}).get("from"), column.get("sensitivity", {}).get("to")):
                shown.setdefault(proposal.dataset_id, (proposal.dataset, []))[1].append(column["name"])
    restricted_columns_viewed(principal=principal, shown=list(shown.values()), remote_addr=remote_addr, via=via)


def proposal_reviewers(proposal: MetadataProposal):
    """Who may review a proposal (``policies.can_review_proposal`` in SQL): admins and security
    engineers, and for a dataset its owners and stewards; never the proposer or a service account."""
    from django.db.models import Q

    condition = Q(is_superuser=True) | Q(groups__company_role__slug="security_engineer")
    if proposal.dataset_id:
        condition |= Q(pk__in=proposal.reviewers.values("pk"))
    return User.objects.filter(condition, is_active=True, is_service_account=False).exclude(
        pk=proposal.proposer_id).distinct()


def proposal_summary(proposal: MetadataProposal) -> str:
    """One line: what the proposal changes."""
    parts, changes = [], proposal.changes
    for column in changes.get("columns", []):
        for key in ("sensitivity", "protection"):
            if key in column:
                parts.append(f"{column['name']} {key} {column[key]['from']} → {column[key]['to']}")
    if "dataset" in changes:
        tier = changes["dataset"]["sensitivity"]
        parts.append(f"dataset sensitivity {tier['from']} → {tier['to']}")
    if "owners" in changes:
        parts.append(f"owners {', '.join(changes['owners']['from']) or '(none)'} → {', '.join(changes['owners']['to']) or '(none)'}")
    if changes.get("tags", {}).get("add"):
        parts.append(f"add tag {', '.join(changes['tags']['add'])}")
    if changes.get("stewards", {}).get("add"):
        target = changes["stewards"]["add"]
        parts.append(f"new steward {target.get('user') or 'group ' + str(target.get('group'))}")
    for name in GUARDED_STORE_FIELDS:
        if name in changes:
            parts.append(f"{name} {changes[name]['from'] or '(none)'} → {changes[name]['to'] or '(none)'}")
    return "; ".join(parts)
