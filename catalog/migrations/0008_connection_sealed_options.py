import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("catalog", "0007_dataset_classified")]

    operations = [
        migrations.AlterField(
            model_name="connection",
            name="options",
            field=models.JSONField(
                blank=True, default=dict,
                help_text='Driver options from the platform\'s allow-list, e.g. {"sslmode": "require"}; never secret ones.',
            ),
        ),
        migrations.AddField(
            model_name="connection",
            name="options_secret",
            field=models.OneToOneField(
                blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+",
                to="catalog.secret",
            ),
        ),
        migrations.AddField(
            model_name="connection",
            name="sealed_options",
            field=models.JSONField(blank=True, default=list, help_text="Names of the sealed driver options."),
        ),
    ]
