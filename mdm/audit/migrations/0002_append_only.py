from django.db import migrations

from mdm.audit import triggers


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_audit_trail")]

    operations = [
        migrations.RunPython(triggers.create_head, migrations.RunPython.noop),
        migrations.RunPython(triggers.install, triggers.remove),
    ]
