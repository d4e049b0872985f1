"""A dataset node keeps its own effective sensitivity, the highest of its current columns' nodes
(``lineage.sensitivity`` keeps it up to date in the write that moves a column's), so that a walk
reads it with the node instead of taking a max over ten column nodes per dataset reached. Fills it
for existing dataset nodes."""

from django.db import migrations

FILL = """
UPDATE lineage_node SET effective_sensitivity = (
    SELECT max(m.effective_sensitivity) FROM lineage_node m
    WHERE m.dataset_id = lineage_node.dataset_id AND m.kind = 'column' AND m.column_id IS NOT NULL
)
WHERE kind = 'dataset'
"""


class Migration(migrations.Migration):

    dependencies = [
        ("lineage", "0004_job_run_sent_by"),
    ]

    operations = [
        # The reverse leaves the values: before this migration nothing read a dataset node's.
        migrations.RunSQL(FILL, migrations.RunSQL.noop, elidable=False),
    ]
