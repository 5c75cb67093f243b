from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "sync"

    def ready(self) -> None:
        from mdm.erasure import erasure_hook_register
        from sync.erasure import erase

        erasure_hook_register("sync", erase)
        import logging

        from mdm.services.alerts import alert_signal_register

        # httpx logs every request at INFO: one line per delivered event is noise.
        logging.getLogger("httpx").setLevel(logging.WARNING)

        alert_signal_register(
            name="outbox_lag",
            description="Events behind, for the subscriber furthest behind",
            measure=_outbox_lag,
        )
        alert_signal_register(
            name="delivery_failure_rate",
            description="Failed delivery attempts / attempts, for the worst subscriber",
            measure=_delivery_failure_rate,
        )


def _outbox_lag(domain: str | None) -> float | None:
    from sync.selectors import subscriber_health

    health = [h for h in subscriber_health() if h.is_active]
    return float(max(h.lag for h in health)) if health else None


def _delivery_failure_rate(domain: str | None) -> float | None:
    from sync.selectors import subscriber_health

    health = [h for h in subscriber_health() if h.is_active]
    return max(h.failure_rate for h in health) if health else None
