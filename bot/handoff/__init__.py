"""Handoff to humans: routing and SLA policy (pure) and the ticket service (I/O)."""
