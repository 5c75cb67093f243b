"""Send one signed message to a webhook URL or an AMQP exchange.

A failure raises ``TransportError``; ``permanent`` says a retry cannot help (a refused
address, a 410 Gone), ``gone`` that the subscriber asked to be disabled.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

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


def webhook_send(*, url: str, message: Message, timeout: float) -> int:
    """POST the message; the status code of a 2xx answer, or TransportError."""
    refusal = address_refusal(url)
    if refusal:
        raise TransportError(refusal, permanent=True)
    parts = urlsplit(url)
    conn_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    conn = conn_class(parts.hostname or "", parts.port, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    headers = {
        "content-type": "application/json",
        "user-agent": "aurum-webhooks/1",
        "webhook-id": message.msg_id,
        "webhook-timestamp": str(message.timestamp),
        "webhook-signature": message.signature,
    }
    try:
        conn.request("POST", path, body=message.body, headers=headers)
        response = conn.getresponse()
        response.read(4096)
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        raise TransportError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()
    if 200 <= status < 300:
        return status
    if status == 410:
        raise TransportError("410 Gone", status=status, permanent=True, gone=True)
    raise TransportError(f"HTTP {status}", status=status)


def amqp_send(*, url: str, exchange: str, message: Message, timeout: float) -> None:
    """Publish the message, persistent, to a durable topic exchange, with publisher confirms."""
    try:
        with Connection(
            url, connect_timeout=timeout, transport_options={"confirm_publish": True}
        ) as conn:
            conn.ensure_connection(max_retries=1)
            target = Exchange(exchange, type="topic", durable=True)
            producer = Producer(conn.default_channel, exchange=target)
            target(conn.default_channel).declare()
            producer.publish(
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
                timeout=timeout,
            )
    except Exception as exc:  # kombu raises transport-specific errors; all are transient
        raise TransportError(f"{type(exc).__name__}: {exc}") from exc
