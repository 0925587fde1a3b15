"""Storage behind one small async interface; SQLite (WAL) is the embedded default."""

from bot.store.base import (
    Conversation,
    ConversationState,
    CustomerRecord,
    Event,
    MessageStatus,
    NewTicket,
    Received,
    Store,
    StoredMessage,
    Ticket,
    TicketStatus,
)

__all__ = [
    "Conversation",
    "ConversationState",
    "CustomerRecord",
    "Event",
    "MessageStatus",
    "NewTicket",
    "Received",
    "Store",
    "StoredMessage",
    "Ticket",
    "TicketStatus",
]
