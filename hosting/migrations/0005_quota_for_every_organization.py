from django.conf import settings
from django.db import migrations


def create_missing_quotas(apps, schema_editor):
    Organization = apps.get_model("accounts", "Organization")
    OrganizationQuota = apps.get_model("hosting", "OrganizationQuota")
    missing = Organization.objects.filter(quota__isnull=True)
    OrganizationQuota.objects.bulk_create(
        [OrganizationQuota(organization=org, **settings.DEFAULT_QUOTA) for org in missing]
    )


class Migration(migrations.Migration):
    dependencies = [("hosting", "0004_limit_upper_bounds")]

    operations = [migrations.RunPython(create_missing_quotas, migrations.RunPython.noop)]
