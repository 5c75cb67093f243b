"""Reading a source: rows as JSON-safe dicts, and the watermark they reach.

A reader never writes to the hub.  It yields the rows changed since a watermark and, once
exhausted, tells the highest watermark it saw; the service commits that watermark only when
the whole run has committed.  Readers raise ``SourceError`` with a message fit for an admin,
never containing the secret.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Generator, Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

DELETE_DETECTION = ("none", "soft_delete", "full_compare")
PAGINATION = ("page", "offset", "cursor", "none")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


class SourceError(Exception):
    """The source cannot be read: a message for the admin, without the secret."""


class ConfigError(ValueError):
    """A connector configuration that cannot work; the message says which key to fix."""


_PLAIN = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    """A database value as JSON: the same value always gives the same content hash."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(data).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return str(value)


def watermark_dump(value: Any) -> dict[str, Any] | None:
    """A watermark value as stored in the connector's JSON field (typed, to query with)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, dt.date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, bool):
        return {"type": "string", "value": str(value)}
    if isinstance(value, int):
        return {"type": "int", "value": value}
    if isinstance(value, Decimal | float):
        return {"type": "decimal", "value": str(value)}
    return {"type": "string", "value": str(value)}


def watermark_load(stored: Mapping[str, Any] | None) -> Any:
    """The Python value of a stored watermark (None: none yet)."""
    if not stored:
        return None
    kind, value = stored.get("type"), stored.get("value")
    if kind == "datetime":
        return dt.datetime.fromisoformat(str(value))
    if kind == "date":
        return dt.date.fromisoformat(str(value))
    if kind == "int":
        return int(value)  # type: ignore[arg-type]
    if kind == "decimal":
        return Decimal(str(value))
    return value


def _greater(a: Any, b: Any) -> bool:
    """a > b for watermark values; None is below everything."""
    if b is None:
        return a is not None
    if a is None:
        return False
    try:
        return bool(a > b)
    except TypeError:
        return str(a) > str(b)


# --- database tables and queries ----------------------------------------------------------


def _identifier(value: Any, what: str) -> str:
    text = str(value or "")
    if not _IDENTIFIER.match(text):
        raise ConfigError(f"{what}: {text!r} is not a plain column or table name")
    return text


def database_config_check(config: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` naming the key to fix when a database connector cannot work."""
    url = str(config.get("url") or "")
    scheme = urllib.parse.urlsplit(url).scheme.split("+")[0]
    if scheme not in ("mysql", "mariadb", "postgres", "postgresql"):
        raise ConfigError(
            "url: a database URL such as mysql://user@host:3306/erp or "
            "postgresql://user@host:5432/erp is required"
        )
    if bool(config.get("table")) == bool(config.get("query")):
        raise ConfigError("give exactly one of 'table' or 'query'")
    if config.get("table"):
        _identifier(config["table"], "table")
    _identifier(config.get("key_column"), "key_column")
    if config.get("watermark_column"):
        _identifier(config["watermark_column"], "watermark_column")
    detection = config.get("delete_detection", "none")
    if detection not in DELETE_DETECTION:
        raise ConfigError(f"delete_detection: one of {', '.join(DELETE_DETECTION)}")


def url_without_password(url: str) -> tuple[str, str]:
    """Split a URL's password off: (the URL without it, the password or "")."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url, ""
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}@{host}" if user else host
    if parts.port:
        netloc += f":{parts.port}"
    clean = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, urllib.parse.unquote(parts.password)


class DatabaseReader:
    """Rows of a table or query in a source's own PostgreSQL or MariaDB/MySQL database.

    One streaming read (a server-side cursor) in one snapshot: the rows whose watermark
    column is at or above the stored watermark (all rows on the first run), in no particular
    order; the new watermark is the highest value read.  Rows at exactly the old watermark
    are read again and found unchanged, so a row committed in the same second is not lost.
    """

    def __init__(self, config: Mapping[str, Any], password: str) -> None:
        database_config_check(config)
        self.config = config
        self.password = password
        self.url = urllib.parse.urlsplit(str(config["url"]))
        self.mysql = self.url.scheme.split("+")[0] in ("mysql", "mariadb")
        self.watermark: Any = None

    def _quote(self, name: str) -> str:
        q = "`" if self.mysql else '"'
        return ".".join(f"{q}{part}{q}" for part in name.split("."))

    def _source(self) -> str:
        if self.config.get("table"):
            return self._quote(str(self.config["table"]))
        return f"({self.config['query']}) AS aurum_source"

    def _connect(self) -> Any:
        u = self.url
        user = urllib.parse.unquote(u.username or "")
        database = urllib.parse.unquote(u.path.lstrip("/"))
        try:
            if self.mysql:
                import pymysql
                import pymysql.cursors

                return pymysql.connect(
                    host=u.hostname or "127.0.0.1",
                    port=u.port or 3306,
                    user=user or "root",
                    password=self.password,
                    database=database or None,
                    charset="utf8mb4",
                    cursorclass=pymysql.cursors.SSDictCursor,
                    connect_timeout=10,
                )
            import psycopg
            from psycopg.rows import dict_row

            return psycopg.connect(
                host=u.hostname or "127.0.0.1",
                port=u.port or 5432,
                user=user or None,
                password=self.password or None,
                dbname=database or None,
                row_factory=dict_row,
                connect_timeout=10,
            )
        except Exception as exc:
            raise SourceError(self._error("cannot connect", exc)) from None

    def _error(self, what: str, exc: BaseException) -> str:
        text = str(exc)
        if self.password:
            text = text.replace(self.password, "***")
        where = f"{self.url.hostname}:{self.url.port or ''}{self.url.path}"
        return f"{what} to {where}: {type(exc).__name__}: {text}"

    def _stream(
        self, sql: str, params: list[Any], batch: int
    ) -> Generator[dict[str, Any], None, None]:
        """Stream a query's rows.  Stopped early (an error, or the caller closing this
        generator), the connection is closed at once, without draining the result, so the
        source's locks of the read go with it."""
        conn = self._connect()
        cursor: Any = None
        try:
            cursor = conn.cursor() if self.mysql else conn.cursor(name="aurum_connector")
            cursor.execute(sql, params)
            while True:
                rows = cursor.fetchmany(batch)
                if not rows:
                    break
                yield from rows
            cursor.close()
            cursor = None
        except Exception as exc:
            raise SourceError(self._error("reading failed", exc)) from None
        finally:
            result = getattr(cursor, "_result", None)
            if result is not None and getattr(result, "unbuffered_active", False):
                # PyMySQL would read the rest of the result to finish it, on close and again
                # when collected; the connection is closed instead.
                result.unbuffered_active = False
            conn.close()

    def rows(self, watermark: Any, batch: int) -> Generator[dict[str, Any], None, None]:
        """Rows changed since ``watermark`` (every row when None), JSON-safe."""
        column = self.config.get("watermark_column")
        sql = f"SELECT * FROM {self._source()}"  # noqa: S608 - identifiers checked and quoted  # nosec B608
        params: list[Any] = []
        if column and watermark is not None:
            sql += f" WHERE {self._quote(str(column))} >= %s"
            params.append(watermark)
        self.watermark = watermark
        stream = self._stream(sql, params, batch)
        try:
            for row in stream:
                if column:
                    value = row.get(str(column).split(".")[-1])
                    if _greater(value, self.watermark):
                        self.watermark = value
                yield {k: v if type(v) in _PLAIN else jsonable(v) for k, v in row.items()}
        finally:
            stream.close()

    def keys(
        self, batch: int, key_of: Callable[[dict[str, Any]], str | None], key_is_column: bool
    ) -> set[str]:
        """Every key the source holds now (for the full key comparison).  With
        ``key_is_column`` only the key column is read; else whole rows go through ``key_of``
        (a mapping whose key is a template)."""
        column = str(self.config["key_column"])
        if key_is_column:
            sql = f"SELECT {self._quote(column)} AS k FROM {self._source()}"  # noqa: S608  # nosec B608
            return {str(r["k"]).strip() for r in self._stream(sql, [], batch) if r["k"] is not None}
        found: set[str] = set()
        sql = f"SELECT * FROM {self._source()}"  # noqa: S608  # nosec B608
        for row in self._stream(sql, [], batch):
            key = key_of({k: jsonable(v) for k, v in row.items()})
            if key is not None:
                found.add(key)
        return found


# --- HTTP JSON endpoints --------------------------------------------------------------------


def http_config_check(config: Mapping[str, Any]) -> None:
    url = str(config.get("url") or "")
    if not url.startswith(("http://", "https://")):
        raise ConfigError("url: an http(s) URL of the endpoint is required")
    pagination = config.get("pagination", "page")
    if pagination not in PAGINATION:
        raise ConfigError(f"pagination: one of {', '.join(PAGINATION)}")
    size = config.get("page_size", 100)
    if not isinstance(size, int) or size < 1:
        raise ConfigError("page_size: a positive whole number")


def _path(data: Any, path: str) -> Any:
    if not path:
        return data
    for part in path.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)
    return data


def _parse_time(value: Any) -> Any:
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return value


class HttpReader:
    """Records of a paged JSON endpoint (page number, offset or cursor), changed since the
    watermark (``updated_since_param``), authenticated by a header token.

    A 429 or 5xx answer, a timeout or a refused connection is retried with exponential
    back-off (``Retry-After`` honoured, capped); any other 4xx fails the run at once.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        token: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        http_config_check(config)
        self.config = config
        self.token = token
        self.sleep = sleep
        self.watermark: Any = None
        self.requests = 0

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "aurum-connector"}
        if self.token:
            scheme = str(self.config.get("auth_scheme", "Bearer"))
            header = str(self.config.get("auth_header", "Authorization"))
            headers[header] = f"{scheme} {self.token}" if scheme else self.token
        return headers

    def _get(self, params: Mapping[str, Any]) -> Any:
        base = str(self.config["url"])
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = base + (("&" if "?" in base else "?") + query if query else "")
        shown = url.split("?")[0]
        retries = settings.AURUM_CONNECTOR_HTTP_RETRIES
        for attempt in range(retries + 1):
            request = urllib.request.Request(url, headers=self._headers())  # noqa: S310
            self.requests += 1
            wait: float | None = None
            try:
                with urllib.request.urlopen(  # noqa: S310 - an admin-configured http(s) URL  # nosec B310
                    request, timeout=settings.AURUM_CONNECTOR_HTTP_TIMEOUT
                ) as response:
                    body = response.read()
                try:
                    return json.loads(body)
                except ValueError as exc:
                    raise SourceError(f"{shown} did not answer JSON: {exc}") from None
            except urllib.error.HTTPError as exc:
                if exc.code != 429 and exc.code < 500:
                    raise SourceError(
                        f"{shown} answered {exc.code} {exc.reason}; check the URL, the "
                        "parameters and the token"
                    ) from None
                problem = f"{exc.code} {exc.reason}"
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                if retry_after and retry_after.strip().isdigit():
                    wait = float(retry_after)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if attempt == retries:
                raise SourceError(f"{shown} failed {retries + 1} times; last: {problem}")
            backoff = settings.AURUM_CONNECTOR_HTTP_BACKOFF * 2**attempt
            delay = min(settings.AURUM_CONNECTOR_HTTP_BACKOFF_MAX, wait if wait else backoff)
            logger.info("connector: %s answered %s; retrying in %.1f s", shown, problem, delay)
            self.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _records(self, data: Any) -> list[dict[str, Any]]:
        records = _path(data, str(self.config.get("records_path", "data")))
        if not isinstance(records, list):
            raise SourceError(
                f"the answer has no list of records at {self.config.get('records_path', 'data')!r}"
            )
        return [r for r in records if isinstance(r, dict)]

    def rows(self, watermark: Any, batch: int) -> Generator[dict[str, Any], None, None]:
        c = self.config
        pagination = c.get("pagination", "page")
        size = int(c.get("page_size", 100))
        params: dict[str, Any] = dict(c.get("params") or {})
        if watermark is not None and c.get("updated_since_param"):
            params[str(c["updated_since_param"])] = (
                watermark.isoformat() if isinstance(watermark, dt.datetime) else watermark
            )
        field = str(c.get("watermark_field", ""))
        self.watermark = watermark
        page = int(c.get("first_page", 1))
        offset = 0
        cursor: Any = None
        while True:
            query = dict(params)
            if pagination == "page":
                query[c.get("page_param", "page")] = page
                query[c.get("size_param", "page_size")] = size
            elif pagination == "offset":
                query[c.get("offset_param", "offset")] = offset
                query[c.get("limit_param", "limit")] = size
            elif pagination == "cursor":
                query[c.get("size_param", "page_size")] = size
                if cursor is not None:
                    query[c.get("cursor_param", "cursor")] = cursor
            data = self._get(query)
            records = self._records(data)
            for record in records:
                if field:
                    value = _parse_time(_path(record, field))
                    if _greater(value, self.watermark):
                        self.watermark = value
                yield record
            if pagination == "none":
                return
            if pagination == "cursor":
                cursor = _path(data, str(c.get("next_cursor_path", "next_cursor")))
                if not cursor or not records:
                    return
            else:
                if len(records) < size:
                    return
                page += 1
                offset += len(records)
