"""Inbound connectors: configure, schedule, run (claim, read in batches, ingest, commit the
watermark), pause and resume.

The contract of a run:

* It is claimed under a lock on the connector row, with a compare-and-swap on its
  ``current_run``: a run is refused (``ConnectorBusyError``) while another holds an unexpired
  lease.  The lease is renewed after every batch; a run whose process died is taken over
  once its lease has expired, and is recorded as failed.
* Each batch goes through the same ingestion as the API (``source_records_ingest_rows``): its
  own transaction, content-hash no-ops, quarantine of bad rows.
* The watermark moves only in the transaction that closes a successful run.  A run that fails
  or is killed part-way leaves it where it was: the next run reads the same window again, the
  rows already applied are found unchanged, so nothing is lost and nothing is applied twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from celery.schedules import crontab
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from mdm.connectors.crypto import secret_decrypt, secret_encrypt
from mdm.connectors.readers import (
    ConfigError,
    DatabaseReader,
    HttpReader,
    SourceError,
    database_config_check,
    http_config_check,
    url_without_password,
    watermark_dump,
    watermark_load,
)
from mdm.domains import domain_codes
from mdm.mapping import CompiledMapping, compile_mapping, identity_mapping
from mdm.models import (
    Channel,
    Connector,
    ConnectorFile,
    ConnectorRun,
    IngestRun,
    SourceMapping,
    SourceSystem,
)
from mdm.readers import FORMATS, FileFormatError, SourceRow, detect_format, line_label, open_rows
from mdm.services.ingest import (
    Counts,
    ingest_run_finish,
    ingest_run_start,
    source_records_ingest_chunks,
    source_records_ingest_rows,
    source_records_tombstone_missing,
)

logger = logging.getLogger(__name__)

RUN_TASK = "mdm.connector_run"
KINDS = tuple(Connector.Kind.values)


class ConnectorError(Exception):
    """Base of the connector errors; ``status`` is the HTTP status a view answers with."""

    status = 400


class ConnectorConfigError(ConnectorError):
    """A configuration that cannot work; the message names what to fix."""


class ConnectorBusyError(ConnectorError):
    """The connector's previous run is still going."""

    status = 409


class ConnectorPausedError(ConnectorError):
    """A scheduled run of a paused connector."""

    status = 409


# --- configuration --------------------------------------------------------------------------


def schedule_next(*, interval_seconds: int | None, cron: str, after: datetime) -> datetime | None:
    """The first run time after ``after`` (None: run on demand only)."""
    if interval_seconds:
        return after + timedelta(seconds=interval_seconds)
    if cron:
        start, delta, _ = cron_schedule(cron).remaining_delta(after)
        following: datetime = start + delta
        return following
    return None


def cron_schedule(cron: str) -> crontab:
    """A five-field cron expression (minute hour day-of-month month day-of-week), checked."""
    fields = cron.split()
    if len(fields) != 5:
        raise ConnectorConfigError(
            f"cron: {cron!r} needs five fields: minute hour day-of-month month day-of-week"
        )
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month,
            day_of_week=day_of_week,
        )
    except (ValueError, TypeError) as exc:
        raise ConnectorConfigError(f"cron: {cron!r} is not valid: {exc}") from None


def _check_config(kind: str, config: Mapping[str, Any], mapping: CompiledMapping) -> None:
    try:
        if kind == Connector.Kind.DATABASE:
            database_config_check(config)
        elif kind == Connector.Kind.HTTP:
            http_config_check(config)
        elif kind == Connector.Kind.FILE_DROP:
            if not config.get("path"):
                raise ConfigError("path: the folder to watch is required")
            fmt = config.get("format")
            if fmt is not None and fmt not in FORMATS:
                raise ConfigError(f"format: one of {', '.join(FORMATS)}")
        else:
            raise ConfigError(f"kind: one of {', '.join(KINDS)}")
    except ConfigError as exc:
        raise ConnectorConfigError(f"config.{exc}") from None
    detection = config.get("delete_detection")
    if detection == "soft_delete" and "deleted" not in mapping.spec and not mapping.identity:
        raise ConnectorConfigError(
            "delete_detection 'soft_delete' needs a [deleted] field in the mapping"
        )


def _compiled(connector: Connector) -> CompiledMapping:
    if connector.mapping is not None:
        return compile_mapping(connector.mapping.spec)
    return identity_mapping(connector.domain)


def connector_config_check(
    *,
    kind: str,
    source_system: SourceSystem,
    domain: str,
    mapping: SourceMapping | None,
    config: Mapping[str, Any] | None,
    secret: str | None,
    interval_seconds: int | None,
    cron: str,
    batch_size: int,
) -> tuple[dict[str, Any], str | None]:
    """Check a connector's settings without storing anything: the config to store (a
    database URL without its password) and the secret.  Raises ``ConnectorConfigError``
    naming what to fix."""
    if kind not in KINDS:
        raise ConnectorConfigError(f"kind: one of {', '.join(KINDS)}")
    if domain not in domain_codes():
        raise ConnectorConfigError(f"domain: one of {', '.join(domain_codes())}")
    if mapping is not None and (
        mapping.source_system_id != source_system.pk or mapping.domain != domain
    ):
        raise ConnectorConfigError(
            f"mapping: {mapping} is not a mapping of {source_system.code} for {domain}"
        )
    if interval_seconds is not None and interval_seconds < 1:
        raise ConnectorConfigError("interval_seconds: a positive number of seconds")
    if interval_seconds and cron:
        raise ConnectorConfigError("give either interval_seconds or cron, not both")
    if cron:
        cron_schedule(cron)
    if batch_size < 1 or batch_size > 100_000:
        raise ConnectorConfigError("batch_size: between 1 and 100000")
    config = dict(config or {})
    if kind == Connector.Kind.DATABASE and config.get("url"):
        config["url"], password = url_without_password(str(config["url"]))
        if password:
            secret = password
    compiled = (
        compile_mapping(mapping.spec, domain=domain)
        if mapping is not None
        else identity_mapping(domain)
    )
    _check_config(kind, config, compiled)
    return config, secret


def connector_upsert(
    *,
    name: str,
    kind: str,
    source_system: SourceSystem,
    domain: str,
    mapping: SourceMapping | None = None,
    config: Mapping[str, Any] | None = None,
    secret: str | None = None,
    interval_seconds: int | None = None,
    cron: str = "",
    batch_size: int = 5000,
    is_paused: bool | None = None,
    user: Any = None,
) -> tuple[Connector, bool]:
    """Create or update the connector ``name``.  ``secret`` None keeps the stored one, ""
    clears it; a password in a database URL is moved into the (encrypted) secret.

    Raises ``ConnectorConfigError`` (nothing stored) naming what to fix.  Safe to repeat.
    """
    config, secret = connector_config_check(
        kind=kind,
        source_system=source_system,
        domain=domain,
        mapping=mapping,
        config=config,
        secret=secret,
        interval_seconds=interval_seconds,
        cron=cron,
        batch_size=batch_size,
    )
    now = timezone.now()
    with transaction.atomic():
        connector = Connector.objects.select_for_update().filter(name=name).first()
        created = connector is None
        if connector is None:
            connector = Connector(name=name)
        schedule_changed = (
            created or connector.interval_seconds != interval_seconds or connector.cron != cron
        )
        connector.kind = kind
        connector.source_system = source_system
        connector.domain = domain
        connector.mapping = mapping
        connector.config = config
        connector.interval_seconds = interval_seconds
        connector.cron = cron
        connector.batch_size = batch_size
        if is_paused is not None:
            connector.is_paused = is_paused
        if secret is not None:
            connector.secret_encrypted = secret_encrypt(secret)
        if schedule_changed:
            connector.next_run_at = schedule_next(
                interval_seconds=interval_seconds, cron=cron, after=now
            )
        connector._change_reason = "created" if created else "configuration changed"  # type: ignore[attr-defined]
        connector.full_clean(exclude=["current_run", "mapping", "source_system"])
        connector.save()
    logger.info(
        "connector %s %s",
        connector.name,
        "created" if created else "updated",
        extra={"connector": connector.pk},
    )
    return connector, created


def connector_register_spec(
    *, spec: Mapping[str, Any], mapping: SourceMapping, user: Any = None
) -> tuple[Connector, bool]:
    """Create or update a connector from the ``[connector]`` table of a mapping file (see
    docs/connectors.md).  The secret comes from ``secret_env`` (an environment variable: no
    secret in the file) or ``secret``.  Safe to repeat."""
    spec = dict(spec)
    known = {
        "name",
        "kind",
        "schedule",
        "every_seconds",
        "cron",
        "batch_size",
        "paused",
        "secret",
        "secret_env",
    }
    name = spec.pop("name", None)
    kind = spec.pop("kind", None)
    if not name or not kind:
        raise ConnectorConfigError("[connector] needs a 'name' and a 'kind'")
    secret: str | None = spec.pop("secret", None)
    secret_env = spec.pop("secret_env", None)
    if secret_env:
        if secret_env not in os.environ:
            raise ConnectorConfigError(
                f"[connector] secret_env: the environment variable {secret_env} is not set"
            )
        secret = os.environ[secret_env]
    every = spec.pop("every_seconds", None)
    cron = spec.pop("cron", "")
    batch_size = spec.pop("batch_size", 5000)
    paused = spec.pop("paused", None)
    config = {k: v for k, v in spec.items() if k not in known}
    return connector_upsert(
        name=str(name),
        kind=str(kind),
        source_system=mapping.source_system,
        domain=mapping.domain,
        mapping=mapping,
        config=config,
        secret=secret,
        interval_seconds=int(every) if every else None,
        cron=str(cron or ""),
        batch_size=int(batch_size),
        is_paused=paused,
        user=user,
    )


def connector_pause(*, connector: Connector, user: Any = None) -> Connector:
    """Stop scheduled runs (a running run finishes).  Safe to repeat."""
    with transaction.atomic():
        locked = Connector.objects.select_for_update().get(pk=connector.pk)
        if not locked.is_paused:
            locked.is_paused = True
            locked._change_reason = "paused"  # type: ignore[attr-defined]
            locked.save(update_fields=["is_paused"])
    return locked


def connector_resume(*, connector: Connector, user: Any = None) -> Connector:
    """Resume scheduled runs; the next one is one interval (or cron slot) from now.  Safe to
    repeat."""
    with transaction.atomic():
        locked = Connector.objects.select_for_update().get(pk=connector.pk)
        if locked.is_paused:
            locked.is_paused = False
            locked.next_run_at = schedule_next(
                interval_seconds=locked.interval_seconds, cron=locked.cron, after=timezone.now()
            )
            locked._change_reason = "resumed"  # type: ignore[attr-defined]
            locked.save(update_fields=["is_paused", "next_run_at"])
    return locked


def connector_run_request(*, connector: Connector, user: Any = None) -> None:
    """Queue a run now (after commit).  Raises ``ConnectorBusyError`` when a run holds the
    connector; the run itself checks again when it starts."""
    now = timezone.now()
    holder = Connector.objects.filter(
        pk=connector.pk, current_run__isnull=False, lease_until__gt=now
    ).values_list("current_run_id", flat=True)
    running = holder.first()
    if running is not None:
        raise ConnectorBusyError(f"run {running} of {connector.name} is still going")
    user_id = getattr(user, "pk", None)
    transaction.on_commit(lambda: _queue(connector.pk, "manual", user_id))


def _queue(connector_id: int, trigger: str, user_id: int | None = None) -> None:
    from mdm.tasks import connector_run as task  # the task module imports the services

    try:
        task.delay(connector_id, trigger=trigger, user_id=user_id)
    except Exception:  # the broker is down
        logger.warning("could not queue %s for connector %s", RUN_TASK, connector_id)


def connectors_schedule_due(*, now: datetime | None = None) -> list[int]:
    """Queue a run of every unpaused connector whose time has come, and move its next run
    time on with a compare-and-swap, so two schedulers queue it once.  Safe to repeat."""
    now = now or timezone.now()
    queued: list[int] = []
    due = Connector.objects.filter(is_paused=False, next_run_at__lte=now).values_list(
        "pk", "next_run_at", "interval_seconds", "cron"
    )
    for pk, next_run_at, interval, cron in due:
        following = schedule_next(interval_seconds=interval, cron=cron, after=now)
        with transaction.atomic():
            moved = Connector.objects.filter(pk=pk, next_run_at=next_run_at).update(
                next_run_at=following
            )
            if moved:
                queued.append(pk)
                transaction.on_commit(lambda pk=pk: _queue(pk, "schedule"))  # type: ignore[misc]
    return queued


# --- running --------------------------------------------------------------------------------


def _lease(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.AURUM_CONNECTOR_LEASE_SECONDS)


def _claim(connector_id: int, trigger: str, user: Any) -> ConnectorRun:
    """Lock the connector, check no live run holds it, and make this run its holder."""
    now = timezone.now()
    with transaction.atomic():
        connector = Connector.objects.select_for_update().get(pk=connector_id)
        if trigger == ConnectorRun.Trigger.SCHEDULE and connector.is_paused:
            raise ConnectorPausedError(f"{connector.name} is paused")
        previous = connector.current_run_id
        if previous is not None and connector.lease_until and connector.lease_until > now:
            raise ConnectorBusyError(f"run {previous} of {connector.name} is still going")
        if previous is not None:
            ConnectorRun.objects.filter(pk=previous, status=ConnectorRun.Status.RUNNING).update(
                status=ConnectorRun.Status.FAILED,
                finished_at=now,
                error="abandoned: its process stopped without finishing (the lease expired); "
                "the watermark was left where it was",
            )
        run = ConnectorRun.objects.create(
            connector=connector,
            trigger=trigger,
            watermark_before=connector.watermark,
            created_by=user if getattr(user, "pk", None) else None,
        )
        # Compare-and-swap as well: on SQLite the row lock above is a no-op.
        claimed = (
            Connector.objects.filter(pk=connector_id)
            .filter(Q(current_run_id=previous) if previous else Q(current_run__isnull=True))
            .update(current_run=run, lease_until=_lease(now))
        )
        if not claimed:
            raise ConnectorBusyError(f"another run of {connector.name} started just now")
    return run


def _progress(run: ConnectorRun, counts: Counts, files: int = 0) -> None:
    """Store the counts so far and renew the lease; a lost lease stops the run."""
    now = timezone.now()
    renewed = Connector.objects.filter(pk=run.connector_id, current_run=run).update(
        lease_until=_lease(now)
    )
    if not renewed:
        raise ConnectorBusyError(
            f"run {run.pk} lost its claim (its lease expired and another run took over)"
        )
    _copy_counts(run, counts, files)
    ConnectorRun.objects.filter(pk=run.pk).update(
        read_count=run.read_count,
        created_count=run.created_count,
        updated_count=run.updated_count,
        unchanged_count=run.unchanged_count,
        quarantined_count=run.quarantined_count,
        deleted_count=run.deleted_count,
        stale_count=run.stale_count,
        files_count=run.files_count,
    )


def _copy_counts(run: ConnectorRun, counts: Counts, files: int) -> None:
    run.read_count = counts.read
    run.created_count = counts.created
    run.updated_count = counts.updated
    run.unchanged_count = counts.unchanged
    run.quarantined_count = counts.quarantined
    run.deleted_count = counts.deleted
    run.stale_count = counts.stale
    run.files_count = files


def _chunks(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[SourceRow]]:
    chunk: list[SourceRow] = []
    for number, data in enumerate(rows, start=1):
        chunk.append(SourceRow(number, data))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class _Outcome:
    watermark: Any
    files: int = 0
    failed_files: int = 0
    full_compare: bool = False


BatchHook = Callable[[int], None]


def connector_run(
    *,
    connector_id: int,
    trigger: str = ConnectorRun.Trigger.MANUAL,
    user: Any = None,
    full_compare: bool | None = None,
    on_batch: BatchHook | None = None,
) -> ConnectorRun:
    """Run a connector now: claim it, read what changed since its watermark, ingest it batch
    by batch, and commit the new watermark with the run's end.

    Raises ``ConnectorBusyError`` (nothing written) while another run holds the connector,
    ``ConnectorPausedError`` for a scheduled run of a paused one.  A failure of the source or
    of a batch is recorded on the returned run (status failed, the error) and leaves the
    watermark as it was.  Safe to repeat.  ``full_compare`` forces (True) or skips (False)
    the full key comparison of a database connector; ``on_batch`` is called after each
    committed batch with its number.
    """
    run = _claim(connector_id, trigger, user)
    connector = Connector.objects.select_related("source_system", "mapping").get(pk=connector_id)
    counts = Counts()
    started = time.perf_counter()
    ingest: IngestRun | None = None
    outcome = _Outcome(connector.watermark)
    try:
        mapping = _compiled(connector)
        ingest = ingest_run_start(
            source_system=connector.source_system,
            domain=connector.domain,
            channel=Channel.CONNECTOR,
            mapping=connector.mapping,
            file_name=f"connector {connector.name}",
            user=user,
        )
        ConnectorRun.objects.filter(pk=run.pk).update(ingest_run=ingest)
        run.ingest_run = ingest
        if connector.kind == Connector.Kind.FILE_DROP:
            outcome = _run_file_drop(connector, run, ingest, mapping, counts, user, on_batch)
        else:
            outcome = _run_rows(
                connector, run, ingest, mapping, counts, user, on_batch, full_compare
            )
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, SourceError) else str(exc)
        if not isinstance(exc, SourceError | ConnectorError | FileFormatError):
            logger.exception("connector %s run %s failed", connector.name, run.pk)
        return _finish(run, connector, counts, ingest, started, outcome, error=error)
    return _finish(run, connector, counts, ingest, started, outcome)


def _reader(connector: Connector) -> DatabaseReader | HttpReader:
    secret = secret_decrypt(connector.secret_encrypted)
    if connector.kind == Connector.Kind.DATABASE:
        return DatabaseReader(connector.config, secret)
    return HttpReader(connector.config, secret)


def _full_compare_due(connector: Connector, forced: bool | None) -> bool:
    if connector.kind != Connector.Kind.DATABASE:
        return False
    if connector.config.get("delete_detection") != "full_compare":
        return False
    if forced is not None:
        return forced
    hours = float(connector.config.get("full_compare_every_hours", 24))
    last = connector.last_full_compare_at
    return last is None or last <= timezone.now() - timedelta(hours=hours)


def _run_rows(
    connector: Connector,
    run: ConnectorRun,
    ingest: IngestRun,
    mapping: CompiledMapping,
    counts: Counts,
    user: Any,
    on_batch: BatchHook | None,
    full_compare: bool | None,
) -> _Outcome:
    reader = _reader(connector)
    before = watermark_load(connector.watermark)
    label = "row" if connector.kind == Connector.Kind.DATABASE else "record"
    size = connector.batch_size
    batches = 0

    def committed() -> None:
        nonlocal batches
        batches += 1
        _progress(run, counts)
        if on_batch is not None:
            on_batch(batches)

    rows = reader.rows(before, size)
    try:
        source_records_ingest_chunks(
            run=ingest,
            mapping=mapping,
            chunks=_chunks(rows, size),
            counts=counts,
            label=label,
            user=user,
            on_chunk=committed,
        )
    finally:
        rows.close()  # a failed run lets go of the source's connection now, not at GC
    outcome = _Outcome(watermark_dump(reader.watermark) or connector.watermark)
    if isinstance(reader, DatabaseReader) and _full_compare_due(connector, full_compare):
        key_spec = mapping.spec.get("key", {})
        key_is_column = mapping.identity and connector.config["key_column"] == "source_key"
        key_is_column = key_is_column or key_spec.get("field") == connector.config["key_column"]

        def key_of(row: dict[str, Any]) -> str | None:
            return mapping.meta(row).source_key

        present = reader.keys(size, key_of, key_is_column)
        if (
            not present
            and ingest.source_system.records.filter(
                domain=connector.domain, is_deleted=False
            ).exists()
        ):
            raise SourceError(
                "the full key comparison found no rows in the source; refusing to delete "
                "every record (check the table or query)"
            )
        counts.add(source_records_tombstone_missing(run=ingest, present_keys=present, user=user))
        _progress(run, counts)
        outcome.full_compare = True
    return outcome


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _move(path: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}.{timezone.now():%Y%m%dT%H%M%S%f}{path.suffix}"
    shutil.move(str(path), str(target))


def _run_file_drop(
    connector: Connector,
    run: ConnectorRun,
    ingest: IngestRun,
    mapping: CompiledMapping,
    counts: Counts,
    user: Any,
    on_batch: BatchHook | None,
) -> _Outcome:
    """Each file of the folder not yet processed (by name and content hash), oldest name
    first, is ingested and moved to ``done`` (or ``failed`` when it cannot be read at all;
    bad rows of a readable file go to quarantine as with ``ingest``)."""
    c = connector.config
    folder = Path(str(c["path"]))
    if not folder.is_dir():
        raise SourceError(f"the folder {folder} does not exist")
    done = Path(str(c.get("done_path") or folder / "done"))
    failed = Path(str(c.get("failed_path") or folder / "failed"))
    pattern = str(c.get("pattern", "*"))
    files = 0
    failed_files = 0
    batch = 0
    last = (connector.watermark or {}).get("value")
    for path in sorted(p for p in folder.glob(pattern) if p.is_file()):
        digest = _sha256(path)
        seen = ConnectorFile.objects.filter(
            connector=connector, name=path.name, content_hash=digest
        ).values_list("status", flat=True)
        status = seen.first()
        if status is not None:
            # Processed before; the run died before moving it.
            _move(path, done if status == ConnectorFile.Status.DONE else failed)
            continue
        file_counts = Counts()
        error = ""
        try:
            fmt = detect_format(path, c.get("format") or mapping.file_format)
            rows, _ = open_rows(path, fmt, delimiter=mapping.delimiter, encoding=mapping.encoding)
            label = line_label(fmt)
            chunk: list[SourceRow] = []
            index = 0
            for row in rows:
                chunk.append(row)
                if len(chunk) >= connector.batch_size:
                    results = source_records_ingest_rows(
                        run=ingest, mapping=mapping, rows=chunk, start_index=index, user=user
                    )
                    index += len(chunk)
                    file_counts.add(results, label)
                    counts.add(results, label)
                    chunk = []
                    batch += 1
                    _progress(run, counts, files)
                    if on_batch is not None:
                        on_batch(batch)
            if chunk:
                results = source_records_ingest_rows(
                    run=ingest, mapping=mapping, rows=chunk, start_index=index, user=user
                )
                file_counts.add(results, label)
                counts.add(results, label)
                batch += 1
        except FileFormatError as exc:
            error = str(exc)
        files += 1
        ConnectorFile.objects.create(
            connector=connector,
            name=path.name,
            content_hash=digest,
            status=ConnectorFile.Status.FAILED if error else ConnectorFile.Status.DONE,
            run=run,
            read_count=file_counts.read,
            error=error,
            processed_at=timezone.now(),
        )
        if error:
            failed_files += 1
            counts.errors.append({"file": path.name, "error": error})
        _move(path, failed if error else done)
        last = path.name
        _progress(run, counts, files)
        if on_batch is not None and not error:
            on_batch(batch)
    return _Outcome(
        {"type": "string", "value": last} if last else None,
        files=files,
        failed_files=failed_files,
    )


def _finish(
    run: ConnectorRun,
    connector: Connector,
    counts: Counts,
    ingest: IngestRun | None,
    started: float,
    outcome: _Outcome,
    error: str | None = None,
) -> ConnectorRun:
    """Close the run; on success commit the watermark with it, in one transaction, only if
    this run still holds the connector."""
    now = timezone.now()
    if ingest is not None:
        ingest_run_finish(run=ingest, counts=counts, started=started, failure=error)
    with transaction.atomic():
        holder = Connector.objects.select_for_update().get(pk=connector.pk)
        if holder.current_run_id != run.pk and error is None:
            error = "the run lost its claim (its lease expired and another run took over)"
        _copy_counts(run, counts, outcome.files)
        run.finished_at = now
        run.duration_seconds = time.perf_counter() - started
        errors = [str(e) for e in counts.errors[:20]]
        if error:
            run.status = ConnectorRun.Status.FAILED
            run.error = "\n".join([error, *errors])
            run.watermark_after = connector.watermark
        else:
            run.status = (
                ConnectorRun.Status.PARTIAL
                if counts.quarantined or outcome.failed_files
                else ConnectorRun.Status.SUCCEEDED
            )
            run.error = "\n".join(errors)
            run.watermark_after = outcome.watermark
            run.full_compare = outcome.full_compare
        run.save()
        if holder.current_run_id == run.pk:
            updates: dict[str, Any] = {"current_run": None, "lease_until": None}
            if not error:
                updates["watermark"] = outcome.watermark
                if outcome.full_compare:
                    updates["last_full_compare_at"] = now
            Connector.objects.filter(pk=connector.pk, current_run=run).update(**updates)
    logger.info(
        "connector %s run %s %s",
        connector.name,
        run.pk,
        run.status,
        extra={
            "connector": connector.pk,
            "connector_run": run.pk,
            "counts": counts.as_dict(),
            "watermark_before": run.watermark_before,
            "watermark_after": run.watermark_after,
        },
    )
    return run
