"""Thin Celery tasks around ``sync.services``."""

from __future__ import annotations

from celery import shared_task

from sync.services import deliveries_send, delivery_attempt, events_purge, sync_relay


@shared_task(name="sync.relay", acks_late=True, reject_on_worker_lost=True)
def relay(queue: str | None = None) -> int:
    """One relay pass; queues a batch task per claimed batch.  Safe to run twice."""
    result = sync_relay()
    for batch in result.batches:
        deliver_batch.apply_async(args=[batch], queue=queue)
    return len(result.to_send)


@shared_task(name="sync.deliver_batch", acks_late=True, reject_on_worker_lost=True)
def deliver_batch(delivery_ids: list[int]) -> int:
    """Send one subscriber's batch of deliveries in seq order (ids in, never objects).
    Idempotent: rows no longer queued are skipped.  Returns how many were delivered."""
    outcomes = deliveries_send(delivery_ids=delivery_ids)
    return sum(1 for outcome in outcomes.values() if outcome == "delivered")


@shared_task(name="sync.deliver", acks_late=True, reject_on_worker_lost=True)
def deliver(delivery_id: int) -> str:
    """Send one delivery (kept for tasks queued before batches).  A repeat is "skipped"."""
    return delivery_attempt(delivery_id=delivery_id)


@shared_task(name="sync.purge_events", acks_late=True, reject_on_worker_lost=True)
def purge_events() -> int:
    """Delete events past the retention that every subscriber has received.  Safe to repeat."""
    return events_purge().events
