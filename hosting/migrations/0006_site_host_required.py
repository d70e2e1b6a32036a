import django.db.models.deletion
from django.db import migrations, models


def place_homeless_sites(apps, schema_editor):
    """Every site is placed on a host when it is created; a row without one (made by hand)
    goes to the first host, or the migration stops and says which sites to place."""
    Site = apps.get_model("hosting", "Site")
    DockerHost = apps.get_model("hosting", "DockerHost")
    homeless = Site.objects.filter(host__isnull=True)
    if not homeless.exists():
        return
    host = DockerHost.objects.order_by("created_at").first()
    if host is None:
        names = ", ".join(homeless.values_list("slug", flat=True)[:20])
        raise RuntimeError(f"Sites without a host and no host to place them on: {names}")
    homeless.update(host=host)


class Migration(migrations.Migration):
    dependencies = [
        ("hosting", "0005_quota_for_every_organization"),
    ]

    operations = [
        migrations.RunPython(place_homeless_sites, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="site",
            name="host",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="sites",
                to="hosting.dockerhost",
            ),
        ),
    ]
