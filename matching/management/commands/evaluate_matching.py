"""python manage.py evaluate_matching DOMAIN --truth FILE"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from matching.evaluation import bcubed_scores, pairwise_scores
from mdm.domains import UnknownDomainError, get_domain
from mdm.models import SourceRecord

TRUTH_COLUMNS = {"source", "source_key", "entity_id"}


class Command(BaseCommand):
    help = (
        "Compare the hub's golden records with a ground truth and print pairwise precision, "
        "recall and F1 and B-cubed scores. The truth is a CSV with columns source, "
        "source_key, entity_id (and optionally domain), like fixtures/ground_truth.csv."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("domain")
        parser.add_argument("--truth", type=Path, required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            domain = get_domain(options["domain"]).code
        except UnknownDomainError as exc:
            raise CommandError(str(exc)) from exc
        truth = self._read_truth(options["truth"], domain)
        predicted: dict[tuple[str, str], int] = {}
        unmatched = 0
        rows = SourceRecord.objects.filter(domain=domain, is_deleted=False).values_list(
            "source_system__code", "source_key", "xref__golden_id"
        )
        for source, key, golden in rows.iterator(5000):
            if (source, key) not in truth:
                continue
            if golden is None:
                unmatched += 1
                continue
            predicted[(source, key)] = golden
        if not predicted:
            raise CommandError(
                f"no {domain} record of the truth file has a golden record yet: "
                f"run `manage.py match {domain} --full` first"
            )
        evaluated = {k: v for k, v in truth.items() if k in predicted}
        pairwise = pairwise_scores(predicted, evaluated)
        bcubed = bcubed_scores(predicted, evaluated)
        self.stdout.write(
            f"{domain}: {len(predicted)} records evaluated "
            f"({len(truth) - len(predicted) - unmatched} of the truth not in the hub, "
            f"{unmatched} not matched yet)"
        )
        self.stdout.write(
            f"pairwise  precision {pairwise.precision:.4f}  recall {pairwise.recall:.4f}  "
            f"F1 {pairwise.f1:.4f}  (predicted pairs {pairwise.predicted_pairs}, "
            f"true pairs {pairwise.true_pairs}, correct {pairwise.true_positive_pairs})"
        )
        self.stdout.write(
            f"B-cubed   precision {bcubed.precision:.4f}  recall {bcubed.recall:.4f}  "
            f"F1 {bcubed.f1:.4f}"
        )

    def _read_truth(self, path: Path, domain: str) -> dict[tuple[str, str], str]:
        if not path.is_file():
            raise CommandError(f"truth file not found: {path}")
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = TRUTH_COLUMNS - set(reader.fieldnames or [])
            if missing:
                raise CommandError(
                    f"{path.name} line 1: missing column(s) {sorted(missing)}; "
                    f"expected {sorted(TRUTH_COLUMNS)} (and optionally domain)"
                )
            truth: dict[tuple[str, str], str] = {}
            for row in reader:
                if row.get("domain") and row["domain"] != domain:
                    continue
                if not row["source"] or not row["source_key"] or not row["entity_id"]:
                    raise CommandError(
                        f"{path.name} line {reader.line_num}: source, source_key and "
                        "entity_id must all have a value"
                    )
                truth[(row["source"], row["source_key"])] = row["entity_id"]
        return truth
