"""The company roles the catalog knows out of the box."""

COMPANY_ROLES = [
    # slug, name, can_register, can_manage_stores
    ("data_scientist", "Data scientist", False, False),
    ("security_engineer", "Security engineer", False, False),
    ("software_engineer", "Software engineer", False, False),
    ("marketing_analyst", "Marketing analyst", False, False),
    ("product_manager", "Product manager", False, False),
    ("executive", "Executive", False, False),
    ("data_engineer", "Data engineer", True, False),
    ("platform_engineer", "Platform engineer", True, True),
    ("ops_engineer", "Operations engineer", False, False),
]
