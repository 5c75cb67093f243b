"""Erasure in matching: scored pairs of the person's records, constraint reasons, the store."""

from __future__ import annotations

from django.db.models import Q

from matching.models import MatchPair, PairConstraint
from mdm.erasure import ErasureSubject


def erase(subject: ErasureSubject) -> dict[str, int]:
    """Delete the scored pairs (their explanations hold the compared values) of the
    person's records, scrub constraint reasons that name them, and drop this process's
    match stores (other processes drop the records at their next refresh: erasure writes
    a new history row of each record)."""
    records = subject.record_ids
    pairs = MatchPair.objects.filter(Q(left_id__in=records) | Q(right_id__in=records)).delete()[0]
    reasons = subject.scrub_rows(PairConstraint.objects.filter(domain=subject.domain), ["reason"])
    history = PairConstraint.history.model
    reasons += subject.scrub_rows(history.objects.filter(domain=subject.domain), ["reason"])
    from matching.store import stores_clear

    stores_clear()
    return {"match_pairs": pairs, "pair_constraints": reasons}
