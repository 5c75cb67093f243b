"""python manage.py train_model DOMAIN [--activate]"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from matching.services import MatchingError, match_model_train
from mdm.domains import UnknownDomainError, get_domain


class Command(BaseCommand):
    help = (
        "Train a new version of the domain's match model on the records in the hub and print "
        "its report (prior, m and u per comparison level, warnings). It becomes active with "
        "--activate, or when no model is active yet."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("domain")
        parser.add_argument("--activate", action="store_true")
        parser.add_argument("--seed", type=int, default=42)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            domain = get_domain(options["domain"]).code
            model = match_model_train(
                domain=domain, activate=options["activate"], seed=options["seed"]
            )
        except (UnknownDomainError, MatchingError) as exc:
            raise CommandError(str(exc)) from exc
        report = model.report
        self.stdout.write(
            f"{model} trained on {model.records_trained} records in "
            f"{model.training_seconds:.1f} s; prior {report['prior']:.6f}"
        )
        self.stdout.write(f"{'comparison':<18} {'level':<34} {'m':>8} {'u':>10} {'weight':>8}")
        for level in report["levels"]:
            m, u, w = level["m_probability"], level["u_probability"], level["match_weight"]
            self.stdout.write(
                f"{level['comparison']:<18} {level['level'][:34]:<34} "
                f"{'' if m is None else f'{m:.4f}':>8} {'' if u is None else f'{u:.6f}':>10} "
                f"{'' if w is None else f'{w:.2f}':>8}"
                + (f"  ! {level['warning']}" if level.get("warning") else "")
            )
        for warning in report["warnings"]:
            self.stderr.write(f"warning: {warning}")
