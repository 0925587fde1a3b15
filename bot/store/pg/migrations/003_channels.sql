-- Messaging channels: where replies go, their delivery state, and verified identities that
-- link one customer across channels.

-- The latest inbound message's reply address, in the platform's terms (chat id, phone, thread).
ALTER TABLE conversations ADD COLUMN reply_to jsonb NOT NULL DEFAULT '{}';

-- NULL: nothing to push (inbound, or the web channel, whose clients replay from the store).
ALTER TABLE messages ADD COLUMN delivery_status text
    CHECK (delivery_status IN ('pending', 'sent', 'failed'));
ALTER TABLE messages ADD COLUMN delivery jsonb NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS messages_pending_delivery ON messages(seq)
    WHERE delivery_status = 'pending';
CREATE INDEX IF NOT EXISTS messages_inbound ON messages(conversation_id, direction, seq);

-- A verified email address or phone number belongs to one customer.
CREATE TABLE IF NOT EXISTS identities (
    kind text NOT NULL CHECK (kind IN ('email', 'phone')),
    value text NOT NULL,
    customer_id text NOT NULL REFERENCES customers(id),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX IF NOT EXISTS identities_customer ON identities(customer_id);
CREATE INDEX IF NOT EXISTS tickets_customer ON tickets(customer_id, status);
