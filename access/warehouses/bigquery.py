"""The plan of enforcement in BigQuery stores: policy tags with data masking rules, IAM bindings.

BigQuery cannot run here, so the catalog produces what it would apply (JSON bodies for the Data
Catalog, BigQuery Data Policy and BigQuery APIs, and BigQuery SQL where DDL/DCL exists), shown on
the dataset's page and in the API, checked in tests (JSON is valid, SQL parses with sqlglot's
``bigquery`` dialect, both match recorded expectations) and applied only where
``google-cloud-bigquery`` and credentials are present.

How it works in BigQuery:

- One taxonomy per store (``catalog-<store>``), with a policy tag per dataset and, under it, one per
  protected column. The table's schema puts each protected column under its tag.
- Each column tag has a data policy (data masking rule) by treatment: partial masks use the predefined
  rules (``EMAIL_MASK``, ``DATE_YEAR_MASK``, ``FIRST_FOUR_CHARACTERS`` for text: four characters, not
  one, is BigQuery's nearest rule; numbers fall back to ``DEFAULT_MASKING_VALUE``, 0), ``Hashed`` and
  ``Tokenized`` a custom masking routine computing HMAC-SHA256 (BigQuery XORs BYTES, so the routine is
  a true HMAC with the dataset's padded key; the key is in the routine's body, which only the
  governance dataset's readers can see), ``Encrypted`` and Restricted ``ALWAYS_NULL``.
- Masked reading: standing readers get ``roles/bigquery.dataViewer`` on the table (DCL ``GRANT``) and
  ``roles/bigquerydatapolicy.maskedReader`` on the data policies. Raw reading: a grant gives
  ``roles/datacatalog.categoryFineGrainedReader`` on the column's tag (the dataset's tag for a whole
  table) with the IAM condition ``request.time < timestamp("<ends_at>")``, so it stops at its end with
  nothing running, and ``roles/bigquery.dataViewer`` (``dataEditor`` for write) on the table under the
  same condition.
"""

import json
import re

from access.masking import NUMBER_DIGITS_KEPT, Plan, Statement, Treatment, ValueKind, column_treatment, value_kind
from catalog.models import Platform

DIALECT = "bigquery"
GOVERNANCE_DATASET = "catalog_governance"
TOKEN_PREFIX = "tok_"
PREDEFINED = {
    ValueKind.EMAIL: "EMAIL_MASK",
    ValueKind.DATE: "DATE_YEAR_MASK",
    ValueKind.TEXT: "FIRST_FOUR_CHARACTERS",
    ValueKind.NUMBER: "DEFAULT_MASKING_VALUE",
    ValueKind.OTHER: "ALWAYS_NULL",
}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")[:60] or "x"


def table_ref(dataset) -> str:
    """```project.dataset.table``` (the catalog's schema is ``project.dataset`` or ``dataset``)."""
    return "`" + ".".join([*dataset.schema.split("."), dataset.name]).replace("`", "") + "`"


def principal(role: str) -> str:
    """An IAM member: kept as is when it names its kind (``group:``, ``serviceAccount:``), else a user."""
    return role if ":" in role else f"user:{role}"


def taxonomy_name(store) -> str:
    return f"catalog-{_slug(store.name)}"


def dataset_tag(dataset) -> str:
    return _slug(f"{dataset.schema}_{dataset.name}")


def column_tag(dataset, column) -> str:
    return _slug(f"{dataset.schema}_{dataset.name}_{column.name}")


def tag_path(dataset, tag: str) -> str:
    # Real policy tags have numeric ids; the apply resolves these display names to them.
    return f"projects/{{project}}/locations/{{location}}/taxonomies/{taxonomy_name(dataset.store)}/policyTags/{tag}"


def routine_name(dataset, treatment: str) -> str:
    return f"{GOVERNANCE_DATASET}.{treatment}_{dataset_tag(dataset)}"


def masking_rule(dataset, column) -> dict:
    treatment = column_treatment(column)
    if treatment in (Treatment.HASH, Treatment.TOKEN):
        return {"routine": f"projects/{{project}}/datasets/{GOVERNANCE_DATASET}/routines/"
                           f"{routine_name(dataset, str(treatment)).split('.')[-1]}"}
    if treatment == Treatment.PARTIAL:
        return {"predefinedExpression": PREDEFINED[value_kind(column)]}
    return {"predefinedExpression": "ALWAYS_NULL"}


def _json(document) -> str:
    return json.dumps(document, indent=2, sort_keys=True)


def routine_statement(dataset, treatment: str, key: bytes | None) -> Statement:
    """A custom masking routine: HMAC-SHA256 of the value's UTF-8 bytes with the dataset's key."""
    from access.warehouses.keys import hmac_pads

    inner, outer = hmac_pads(key if key is not None else b"\0" * 32)
    hmac = (f"TO_HEX(SHA256(CONCAT(FROM_HEX('{outer.hex()}'), "
            f"SHA256(CONCAT(FROM_HEX('{inner.hex()}'), CAST(val AS BYTES))))))")
    body = hmac if treatment == Treatment.HASH else f"CONCAT('{TOKEN_PREFIX}', SUBSTR({hmac}, 1, 16))"
    text = (f"CREATE OR REPLACE FUNCTION {routine_name(dataset, treatment)}(val STRING) RETURNS STRING "
            f"OPTIONS (data_governance_type = 'DATA_MASKING') AS ({body})")
    return Statement(text, f"Masking routine: {treatment} with the key of {dataset.qualified_name}", DIALECT, secret=True)


def dataset_plan(dataset, *, key: bytes | None = None, readers=None) -> Plan:
    """What enforcing ``dataset`` does in its BigQuery store."""
    from access.warehouses import standing_readers

    plan = Plan(platform=Platform.BIGQUERY)
    columns = list(dataset.columns.order_by("position"))
    protected = [c for c in columns if column_treatment(c) != Treatment.AS_IS]
    taxonomy = {
        "displayName": taxonomy_name(dataset.store),
        "activatedPolicyTypes": ["FINE_GRAINED_ACCESS_CONTROL"],
        "policyTags": [{"displayName": dataset_tag(dataset), "description": f"Dataset {dataset.qualified_name}",
                        "children": [{"displayName": column_tag(dataset, c), "description": f"{c.name}: {column_treatment(c)}"}
                                     for c in protected]}],
    }
    plan.statements.append(Statement(_json(taxonomy), "Policy tag taxonomy (Data Catalog taxonomies.create)", "json"))
    plan.statements.append(Statement(f"CREATE SCHEMA IF NOT EXISTS {GOVERNANCE_DATASET}",
                                     "Dataset of the masking routines (no reader gets any role on it)", DIALECT))
    for treatment in sorted({str(column_treatment(c)) for c in protected} & {Treatment.HASH, Treatment.TOKEN}):
        plan.statements.append(routine_statement(dataset, treatment, key))
    policies = [{"dataPolicyId": column_tag(dataset, c), "dataPolicyType": "DATA_MASKING_POLICY",
                 "policyTag": tag_path(dataset, column_tag(dataset, c)), "dataMaskingPolicy": masking_rule(dataset, c)}
                for c in protected]
    plan.statements.append(Statement(_json({"dataPolicies": policies}), "Data masking rules (BigQuery Data Policy API)", "json"))
    schema = {"schema": {"fields": [
        {"name": c.name, "policyTags": {"names": [tag_path(dataset, column_tag(dataset, c))]}} for c in protected]}}
    plan.statements.append(Statement(_json(schema), f"Column policy tags of {table_ref(dataset)} (tables.patch)", "json"))
    readers = standing_readers(dataset) if readers is None else readers
    for role in readers:
        plan.statements.append(Statement(
            f"GRANT `roles/bigquery.dataViewer` ON TABLE {table_ref(dataset)} TO \"{principal(role)}\"",
            f"Standing read of {role} (role matrix): masked columns stay masked", DIALECT))
    if readers and policies:
        bindings = {"bindings": [{"role": "roles/bigquerydatapolicy.maskedReader",
                                  "members": sorted(principal(r) for r in readers)}],
                    "resources": [p["dataPolicyId"] for p in policies]}
        plan.statements.append(Statement(_json(bindings), "Standing readers see masked values (IAM on the data policies)",
                                         "json"))
    for c in protected:
        if column_treatment(c) == Treatment.PARTIAL and value_kind(c) in (ValueKind.TEXT, ValueKind.NUMBER):
            kept = (f" (the other stores keep the last {NUMBER_DIGITS_KEPT} digits)"
                    if value_kind(c) == ValueKind.NUMBER else "")
            plan.notes.append(f"{c.name}: BigQuery's nearest predefined rule is {PREDEFINED[value_kind(c)]}{kept}.")
    plan.notes.append("Generated, not run here: BigQuery SQL is checked with sqlglot and JSON by schema, never "
                      "against BigQuery. Policy tag paths use display names; the apply resolves them to ids.")
    return plan


def store_plan(store) -> Plan:
    plan = Plan(platform=Platform.BIGQUERY)
    for dataset in store.datasets.order_by("schema", "name"):
        part = dataset_plan(dataset)
        plan.statements.extend(s for s in part.statements if s not in plan.statements)
        plan.notes.extend(n for n in part.notes if n not in plan.notes)
    return plan


def grant_plan(grant, role: str) -> Plan:
    """What applying ``grant`` to ``role`` does: conditional IAM bindings that end with the grant."""
    from access.models import AccessLevel

    dataset = grant.dataset
    ends_at = grant.ends_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {"title": f"catalog grant {grant.pk}", "description": f"Ends with grant {grant.pk}",
                 "expression": f'request.time < timestamp("{ends_at}")'}
    columns = {c.name: c for c in dataset.columns.all()}
    tags = ([tag_path(dataset, column_tag(dataset, columns[name])) for name in grant.columns if name in columns]
            if grant.columns else [tag_path(dataset, dataset_tag(dataset))])
    table_role = "roles/bigquery.dataEditor" if grant.level >= AccessLevel.WRITE else "roles/bigquery.dataViewer"
    member = principal(role)
    return Plan(platform=Platform.BIGQUERY, statements=[
        Statement(_json({"resource": table_ref(dataset).strip("`"), "binding": {
            "role": table_role, "members": [member], "condition": condition}}), "The table, until the grant ends", "json"),
        Statement(_json({"resources": tags, "binding": {
            "role": "roles/datacatalog.categoryFineGrainedReader", "members": [member], "condition": condition}}),
            "Raw values of the granted columns, until the grant ends", "json"),
    ])


def apply(plan: Plan, store) -> None:
    """Run ``plan`` in the store; here it fails clearly, naming what is missing."""
    from access.enforcement import EnforcementError

    try:
        import google.cloud.bigquery  # noqa: F401
    except ImportError:
        raise EnforcementError(
            "Applying BigQuery plans needs the google-cloud-bigquery and google-cloud-datacatalog packages, which "
            f"are not installed, and service-account credentials for {store.name}; the plan can be applied by hand.") from None
    raise EnforcementError(f"The store {store.name} has no BigQuery connection with credentials.")
