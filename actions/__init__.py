"""Rasa custom actions: thin wrappers over the knowledge base and the handoff service."""
