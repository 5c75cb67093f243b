"""python manage.py ingest FILE --source CODE --domain DOMAIN [--mapping MAPPING]"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from mdm.domains import UnknownDomainError, get_domain
from mdm.mapping import MappingError, load_mapping_file
from mdm.models import SourceMapping, SourceSystem
from mdm.readers import FileFormatError
from mdm.selectors import MappingNotFoundError, mapping_for
from mdm.services.ingest import Counts, source_records_ingest_file
from mdm.services.sources import source_mapping_register


class Command(BaseCommand):
    help = (
        "Load a CSV, JSON, JSON Lines or Parquet export of a source system. Rejected rows are "
        "reported with their line number and kept in quarantine; the rest still loads. "
        "Re-running the same file changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--source", required=True, help="source system code")
        parser.add_argument("--domain", required=True, help="customer, supplier or product")
        parser.add_argument(
            "--mapping",
            help="a registered mapping name, or a mapping file (.toml/.json) to register and use; "
            "default: the source's default mapping for the domain, else the identity mapping",
        )
        parser.add_argument("--format", choices=["csv", "json", "jsonl", "parquet"])
        parser.add_argument("--chunk-size", type=int, default=None)
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument(
            "--show-errors", type=int, default=20, help="how many rejected rows to list (20)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"file not found: {path}")
        try:
            domain = get_domain(options["domain"]).code
        except UnknownDomainError as exc:
            raise CommandError(str(exc)) from exc
        source = SourceSystem.objects.filter(code=options["source"]).first()
        if source is None:
            known = ", ".join(SourceSystem.objects.values_list("code", flat=True)) or "none yet"
            raise CommandError(
                f"unknown source system {options['source']!r} (known: {known}); "
                "register it with `manage.py register_source MAPPING_FILE`"
            )
        mapping_arg: str | None = options["mapping"]
        mapping_obj: SourceMapping | None
        try:
            if mapping_arg and Path(mapping_arg).suffix.lower() in (".toml", ".json"):
                spec = load_mapping_file(mapping_arg)
                if spec.get("source") not in (None, source.code):
                    raise CommandError(
                        f"{mapping_arg} is a mapping of source {spec['source']!r}, "
                        f"not {source.code!r}"
                    )
                spec.setdefault("domain", domain)
                mapping_obj, mapping, _ = source_mapping_register(spec=spec, source_system=source)
                if mapping.domain.code != domain:
                    raise CommandError(
                        f"{mapping_arg} maps domain {mapping.domain.code}, not {domain}"
                    )
            else:
                mapping_obj, mapping = mapping_for(
                    source_system=source, domain=domain, name=mapping_arg
                )
        except (MappingError, MappingNotFoundError) as exc:
            raise CommandError(str(exc)) from exc

        show_bar = not options["no_progress"] and sys.stderr.isatty()
        bar = tqdm(total=0, unit="B", unit_scale=True, disable=not show_bar, desc=path.name)

        def progress(position: int, total: int, counts: Counts) -> None:
            if bar.total != total:
                bar.total = total
            bar.update(position - bar.n)
            bar.set_postfix(rows=counts.read, rejected=counts.quarantined, refresh=False)

        try:
            result = source_records_ingest_file(
                path=path,
                source_system=source,
                mapping=mapping,
                mapping_obj=mapping_obj,
                file_format=options["format"],
                chunk_size=options["chunk_size"],
                on_progress=progress,
            )
        except FileFormatError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()

        run, counts = result.run, result.counts
        for item in counts.errors[: options["show_errors"]]:
            reasons = "; ".join(
                f"{e['field']}: {e['message']}" if e["field"] else e["message"]
                for e in item["errors"]
            )
            where = f"{result.label} {item[result.label]}"
            self.stderr.write(f"{path.name} {where}: rejected ({reasons})")
        if counts.quarantined > options["show_errors"]:
            self.stderr.write(
                f"... and {counts.quarantined - options['show_errors']} more rejected rows "
                f"(all in quarantine, ingest run {run.pk})"
            )
        seconds = run.duration_seconds or 0.0
        rate = counts.read / seconds if seconds else 0.0
        self.stdout.write(
            f"ingest run {run.pk} {run.status}: read {counts.read}, created {counts.created}, "
            f"updated {counts.updated}, unchanged {counts.unchanged}, deleted {counts.deleted}, "
            f"stale {counts.stale}, quarantined {counts.quarantined} "
            f"in {seconds:.2f} s ({rate:,.0f} rows/s)"
        )
