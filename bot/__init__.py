"""Promptly gateway: channels, durable inbox, ack policy, Rasa client, handoff."""
