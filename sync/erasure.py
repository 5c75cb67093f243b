"""Erasure in sync: event reasons and delivery errors that name the person.

Events carry no payload of their own (it is read from the golden record's history, which
erasure purges), so an event sent after the erasure holds nothing of the person.  The
``erased`` event itself is written by the outbox trigger from the golden record's
deletion history row.
"""

from __future__ import annotations

from mdm.erasure import ErasureSubject
from sync.models import ChangeEvent, Delivery


def erase(subject: ErasureSubject) -> dict[str, int]:
    """Scrub the reasons of the person's golden records' events (a steward's free text may
    name them), and any event reason or delivery error elsewhere that mentions them."""
    own = ChangeEvent.objects.filter(golden_id__in=subject.golden_ids).exclude(kind="erased")
    reasons = own.exclude(reason="").update(reason="")
    reasons += subject.scrub_rows(ChangeEvent.objects.filter(domain=subject.domain), ["reason"])
    errors = subject.scrub_rows(
        Delivery.objects.filter(event__domain=subject.domain).exclude(error=""), ["error"]
    )
    return {"change_events": reasons, "deliveries": errors}
