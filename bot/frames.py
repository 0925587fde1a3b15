"""The wire shape of stored conversation messages (documented in docs/api.md)."""

from __future__ import annotations

from typing import Any

from bot.store.base import StoredMessage


def frame(message: StoredMessage) -> dict[str, Any]:
    body: dict[str, Any] = {
        "seq": message.seq,
        "id": message.id,
        "conversation_id": message.conversation_id,
        "type": message.type,
        "text": message.text,
        "created_at": message.created_at.isoformat(),
        "in_reply_to": message.in_reply_to,
        "citations": message.payload.get("citations", []),
    }
    if message.kind is not None:
        body["kind"] = message.kind
    if message.direction == "in":
        body["client_message_id"] = message.client_message_id
    for key in (
        "queue",
        "queue_name",
        "reference",
        "expected_reply_by",
        "deadline",
        "agent",
        "attachments",
        "csat",
        "rated",
        "choices",
    ):
        if key in message.payload:
            body[key] = message.payload[key]
    if message.delivery_status is not None:
        body["delivery"] = {"status": str(message.delivery_status)}
        for key in ("error", "reason", "attempts"):
            if key in message.delivery:
                body["delivery"][key] = message.delivery[key]
    return body
