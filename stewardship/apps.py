from typing import Any

from django.apps import AppConfig


class StewardshipConfig(AppConfig):
    name = "stewardship"

    def ready(self) -> None:
        from mdm.erasure import erasure_hook_register
        from stewardship.erasure import erase

        erasure_hook_register("stewardship", erase)
        # mdm imports no other app: it hands failing records to whoever registered.
        from mdm.services.quality import (
            quality_task_closer_register,
            quality_task_opener_register,
        )

        quality_task_opener_register(_open_quality_task)
        quality_task_closer_register(_close_quality_tasks)
        from mdm.services.alerts import alert_signal_register

        alert_signal_register(
            name="overdue_tasks",
            description="Open review tasks past their due time",
            measure=_overdue_tasks,
        )


def _open_quality_task(domain: str, record_id: int, rule: str, details: dict[str, Any]) -> None:
    from stewardship.services import data_quality_task_open

    data_quality_task_open(domain=domain, record_id=record_id, rule=rule, details=details)


def _overdue_tasks(domain: str | None) -> float:
    from stewardship.selectors import review_tasks_overdue_count

    return float(review_tasks_overdue_count(domain=domain))


def _close_quality_tasks(rule: str, record_ids: list[int]) -> None:
    from stewardship.services import data_quality_tasks_close

    data_quality_tasks_close(rule=rule, record_ids=record_ids)
