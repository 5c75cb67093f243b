"""Golden records' provenance is stored packed, each distinct entry once (``mdm.provenance``),
in a ``json`` column on PostgreSQL instead of ``jsonb``.

The golden records' rows are packed here, in chunks (no history row, no change event: the
provenance read back is the same). Their history rows keep the full form, which reads as it
is. Reversed, the rows are unpacked again before the column goes back to ``jsonb``.
"""

from collections.abc import Callable
from typing import Any

import orjson
from django.db import migrations

from mdm.provenance import ProvenanceField, pack, unpack

CHUNK = 5_000


def _rewrite(schema_editor: Any, change: Callable[[Any], Any]) -> None:
    connection = schema_editor.connection
    postgres = connection.vendor == "postgresql"
    last = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, provenance FROM mdm_goldenrecord WHERE id > %s ORDER BY id LIMIT %s",
                [last, CHUNK],
            )
            rows = cursor.fetchall()
            if not rows:
                return
            last = rows[-1][0]
            ids: list[int] = []
            texts: list[str] = []
            for pk, stored in rows:
                value = orjson.loads(stored) if isinstance(stored, str | bytes) else stored
                new = change(value)
                if new is not value:
                    ids.append(pk)
                    texts.append(orjson.dumps(new).decode())
            if not ids:
                continue
            if postgres:
                cursor.execute(
                    "UPDATE mdm_goldenrecord g SET provenance = v.p::json "
                    "FROM unnest(%s::bigint[], %s::text[]) AS v(id, p) WHERE g.id = v.id",
                    [ids, texts],
                )
            else:
                cursor.executemany(
                    "UPDATE mdm_goldenrecord SET provenance = %s WHERE id = %s",
                    list(zip(texts, ids, strict=True)),
                )


def forward(apps: Any, schema_editor: Any) -> None:
    _rewrite(schema_editor, pack)  # a row already packed comes back as it is


def backward(apps: Any, schema_editor: Any) -> None:
    _rewrite(schema_editor, unpack)  # a row in the full form comes back as it is


class Migration(migrations.Migration):
    dependencies = [
        ("mdm", "0015_golden_json_lz4"),
    ]

    operations = [
        migrations.AlterField(
            model_name="goldenrecord",
            name="provenance",
            field=ProvenanceField(default=dict),
        ),
        migrations.AlterField(
            model_name="historicalgoldenrecord",
            name="provenance",
            field=ProvenanceField(default=dict),
        ),
        migrations.RunPython(forward, backward, elidable=True),
    ]
