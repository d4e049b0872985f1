"""The audit page's action filter lists exactly the actions the code records."""

import re
from pathlib import Path

from access.audit_actions import AUDIT_ACTIONS, FAMILY_LABELS, audit_action_choices

ROOT = Path(__file__).resolve().parents[2]
APPS = ("access", "catalog", "lineage", "identity", "monitoring", "governance")
LITERAL = re.compile(r'"([a-z_]+\.[a-z_]+)"')


def recorded_actions() -> set[str]:
    """Every ``"family.verb"`` literal on a line that names an audit action in application code."""
    found = set()
    for app in APPS:
        for path in (ROOT / app).rglob("*.py") if (ROOT / app).exists() else ():
            if "migrations" in path.parts:
                continue
            for line in path.read_text().splitlines():
                if re.search(r'\baction\s*=|"action":', line) and "filter(" not in line:
                    found.update(LITERAL.findall(line))
    return found


def test_every_recorded_action_is_listed_and_every_listed_action_is_recorded():
    recorded = recorded_actions()
    assert recorded - set(AUDIT_ACTIONS) == set(), "add these to access/audit_actions.py"
    assert set(AUDIT_ACTIONS) - recorded == set(), "no code records these any more"


def test_choices_are_grouped_by_family_with_the_family_first():
    groups = dict(audit_action_choices()[1:])
    assert set(groups) == {FAMILY_LABELS[action.split(".")[0]] for action in AUDIT_ACTIONS}
    grants = groups["Grants"]
    assert grants[0][0] == "grant" and ("grant.revoked", "grant.revoked") in grants
