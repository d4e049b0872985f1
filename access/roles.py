"""The company roles the catalog knows out of the box, and their default row of the role matrix.

Defaults follow the security guidance: nobody has standing access to Restricted data in
prod; data scientists read prod up to Regular and ask for Sensitive; software engineers
work on dev data and ask for prod when on call (break-glass); executives and product
managers see aggregated datasets; security engineers see all metadata and ask for data.
"""

from access.models import AccessLevel as L

COMPANY_ROLES = [
    # slug, name, can_register, can_manage_stores
    ("data_scientist", "Data scientist", False, False),
    ("security_engineer", "Security engineer", False, False),
    ("software_engineer", "Software engineer", False, False),
    ("data_analyst", "Data analyst", False, False),
    ("product_manager", "Product manager", False, False),
    ("executive", "Executive", False, False),
    ("data_engineer", "Data engineer", True, False),
    ("platform_engineer", "Platform engineer", True, True),
    ("ops_engineer", "Operations engineer", False, False),
]

SECURITY_ROLE = "security_engineer"
ENVIRONMENTS = ["dev", "staging", "prod"]
TIERS = [0, 1, 2, 3]  # Public, Regular, Sensitive, Restricted

# Standing level per role, environment and tier (Public, Regular, Sensitive, Restricted).
M, R, W, N = L.METADATA, L.READ, L.WRITE, L.NONE
STANDING = {
    "data_scientist": {"dev": [R, R, R, M], "staging": [R, R, R, M], "prod": [R, R, M, M]},
    "security_engineer": {"dev": [M, M, M, M], "staging": [M, M, M, M], "prod": [M, M, M, M]},
    "software_engineer": {"dev": [W, W, W, M], "staging": [R, R, M, M], "prod": [M, M, M, M]},
    "data_analyst": {"dev": [R, R, M, M], "staging": [R, R, M, M], "prod": [R, R, M, M]},
    "product_manager": {"dev": [R, R, M, M], "staging": [R, R, M, M], "prod": [R, R, M, M]},
    "executive": {"dev": [R, R, M, M], "staging": [R, R, M, M], "prod": [R, R, M, M]},
    "data_engineer": {"dev": [W, W, W, M], "staging": [W, W, W, M], "prod": [R, R, M, M]},
    "platform_engineer": {"dev": [W, W, W, M], "staging": [W, W, M, M], "prod": [M, M, M, M]},
    "ops_engineer": {"dev": [R, R, M, M], "staging": [R, R, M, M], "prod": [M, M, M, M]},
}
AGGREGATED_ONLY = {"product_manager", "executive"}
# The most each role may ask for just in time (anywhere its standing is lower).
JIT_LEVEL = {
    "data_scientist": R, "security_engineer": R, "software_engineer": W, "data_analyst": R,
    "product_manager": N, "executive": N, "data_engineer": W, "platform_engineer": W, "ops_engineer": R,
}
BREAK_GLASS_ROLES = {"software_engineer", "ops_engineer", "platform_engineer"}
JIT_MAX_HOURS = {0: 72, 1: 72, 2: 8, 3: 4}


def default_cell(slug: str, environment: str, tier: int) -> dict:
    """The default matrix cell of a built-in role."""
    standing = STANDING[slug][environment][tier]
    jit = JIT_LEVEL[slug] if JIT_LEVEL[slug] > standing else N
    prod_restricted = environment == "prod" and tier == 3
    return {
        "standing": standing,
        "aggregated_only": slug in AGGREGATED_ONLY,
        "jit_level": jit,
        "jit_max_hours": JIT_MAX_HOURS[tier] if jit else 0,
        "approvals_required": 2 if prod_restricted else 1,
        "security_approval_required": tier == 3,
        "ticket_required": environment == "prod" and tier >= 2,
        "break_glass": bool(jit) and slug in BREAK_GLASS_ROLES and environment == "prod" and tier < 3,
    }
