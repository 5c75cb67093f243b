"""The cross-reference's insert/update trigger probes each written row's record and golden
record by primary key instead of hashing both tables per statement (``mdm.triggers``)."""

from typing import Any

from django.db import migrations

from mdm import triggers


def replace_functions(apps: Any, schema_editor: Any) -> None:
    """CREATE OR REPLACE the trigger functions; the triggers themselves stay."""
    functions = [s for s in triggers.POSTGRES_INSTALL if s.startswith("CREATE OR REPLACE FUNCTION")]
    triggers.run_on_postgresql(schema_editor, functions)


class Migration(migrations.Migration):
    dependencies = [("mdm", "0013_crossreference_fk_unchecked")]

    operations = [migrations.RunPython(replace_functions, migrations.RunPython.noop)]
