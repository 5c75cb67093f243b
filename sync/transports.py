"""Send one signed message to a webhook URL or an AMQP exchange.

A failure raises ``TransportError``; ``permanent`` says a retry cannot help (a refused
address, a 410 Gone), ``gone`` that the subscriber asked to be disabled.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from kombu import Connection, Exchange, Producer


class TransportError(Exception):
    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        permanent: bool = False,
        gone: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent
        self.gone = gone


@dataclass(frozen=True)
class Message:
    msg_id: str
    timestamp: int
    body: bytes
    signature: str
    routing_key: str


def address_refusal(url: str) -> str | None:
    """Why ``url`` may not be called (a loopback, link-local or private address), or None.

    ``AURUM_WEBHOOK_ALLOW_PRIVATE`` allows every address, ``AURUM_WEBHOOK_ALLOW_LOOPBACK``
    loopback only (tests and local receivers).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    if getattr(settings, "AURUM_WEBHOOK_ALLOW_PRIVATE", False):
        return None
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        return f"{parts.hostname} does not resolve: {exc}"
    allow_loopback = getattr(settings, "AURUM_WEBHOOK_ALLOW_LOOPBACK", False)
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address.is_loopback:
            if not allow_loopback:
                return f"{parts.hostname} resolves to the loopback address {address}"
            continue
        if (
            address.is_private
            or address.is_link_local
            or address.is_reserved
            or address.is_multicast
            or address.is_unspecified
        ):
            return f"{parts.hostname} resolves to the non-public address {address}"
    return None


_HEADERS = {"content-type": "application/json", "user-agent": "aurum-webhooks/1"}
_client: httpx.Client | None = None
_client_pid = 0


def http_client() -> httpx.Client:
    """This process's pooled HTTP client: keep-alive connections reused across deliveries.

    One per process (a forked pool child makes its own: sockets must not be shared).
    """
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = httpx.Client(
            follow_redirects=False,
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )
        _client_pid = os.getpid()
    return _client


class WebhookSender:
    """Sends messages to one webhook URL over the process's pooled connections.

    The address rule is checked once, when the sender is made (once per batch), and each
    send then raises its refusal as a permanent ``TransportError``.
    """

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.refusal = address_refusal(url)

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def send(self, message: Message) -> int | None:
        """POST the message; the status code of a 2xx answer, or TransportError."""
        if self.refusal:
            raise TransportError(self.refusal, permanent=True)
        headers = {
            **_HEADERS,
            "webhook-id": message.msg_id,
            "webhook-timestamp": str(message.timestamp),
            "webhook-signature": message.signature,
        }
        try:
            response = http_client().post(
                self.url, content=message.body, headers=headers, timeout=self.timeout
            )
        except httpx.TimeoutException as exc:
            raise TransportError(f"{type(exc).__name__}: timed out ({exc})") from exc
        except (httpx.HTTPError, OSError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return status
        if status == 410:
            raise TransportError("410 Gone", status=status, permanent=True, gone=True)
        raise TransportError(f"HTTP {status}", status=status)


def webhook_send(*, url: str, message: Message, timeout: float) -> int | None:
    """POST one message (the address rule checked first); its 2xx status or TransportError."""
    return WebhookSender(url, timeout=timeout).send(message)


class AmqpSender:
    """Publishes messages to one exchange over one connection (opened at the first send),
    persistent, with publisher confirms."""

    def __init__(self, url: str, exchange: str, *, timeout: float) -> None:
        self.url = url
        self.exchange = exchange
        self.timeout = timeout
        self._conn: Any = None
        self._producer: Any = None

    def __enter__(self) -> AmqpSender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a broken connection needs no clean close
                self._conn.release()
        self._conn = self._producer = None

    def _open(self) -> Any:
        if self._producer is None:
            conn = Connection(
                self.url,
                connect_timeout=self.timeout,
                transport_options={"confirm_publish": True},
            )
            self._conn = conn
            conn.ensure_connection(max_retries=1)
            target = Exchange(self.exchange, type="topic", durable=True)
            target(conn.default_channel).declare()
            self._producer = Producer(conn.default_channel, exchange=target)
        return self._producer

    def send(self, message: Message) -> int | None:
        try:
            self._open().publish(
                message.body,
                routing_key=message.routing_key,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                message_id=message.msg_id,
                headers={
                    "webhook-id": message.msg_id,
                    "webhook-timestamp": str(message.timestamp),
                    "webhook-signature": message.signature,
                },
                timeout=self.timeout,
            )
        except Exception as exc:  # kombu raises transport-specific errors; all are transient
            self.close()
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return None


def amqp_send(*, url: str, exchange: str, message: Message, timeout: float) -> None:
    """Publish one message, persistent, to a durable topic exchange, with publisher confirms."""
    with AmqpSender(url, exchange, timeout=timeout) as sender:
        sender.send(message)
