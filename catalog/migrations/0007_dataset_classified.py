from django.db import migrations, models


def unclassified_discovered(apps, schema_editor):
    # Datasets discovered from lineage and never registered: nobody declared their sensitivity.
    # So are those an OpenLineage schema facet registered with made-up "Regular" columns and nobody
    # reviewed since. (The decision reads settings.CATALOG_UNCLASSIFIED_TIER for them; the stored
    # tier is only for sorting.) Run ``manage.py lineage_rebuild`` afterwards.
    Dataset = apps.get_model("catalog", "Dataset")
    Dataset.objects.filter(current_version__isnull=True).update(classified=False, sensitivity=2)
    Dataset.objects.filter(needs_review=True, current_version__registered_by="OpenLineage").update(
        classified=False, sensitivity=2)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0006_dataset_steward_permission")]

    operations = [
        migrations.AddField(model_name="dataset", name="classified", field=models.BooleanField(default=True)),
        migrations.RunPython(unclassified_discovered, migrations.RunPython.noop),
    ]
