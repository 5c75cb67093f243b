"""Thin Celery tasks around ``sync.services``."""

from __future__ import annotations

from celery import shared_task

from sync.services import delivery_attempt, sync_relay


@shared_task(name="sync.relay", acks_late=True, reject_on_worker_lost=True)
def relay(queue: str | None = None) -> int:
    """One relay pass; queues a delivery task per claimed delivery.  Safe to run twice."""
    result = sync_relay()
    for delivery_id in result.to_send:
        deliver.apply_async(args=[delivery_id], queue=queue)
    return len(result.to_send)


@shared_task(name="sync.deliver", acks_late=True, reject_on_worker_lost=True)
def deliver(delivery_id: int) -> str:
    """Send one delivery (ids in, never objects).  Idempotent: a repeat is "skipped"."""
    return delivery_attempt(delivery_id=delivery_id)
