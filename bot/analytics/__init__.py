"""Response-time, SLA, deflection and CSAT statistics, computed from the event log alone."""
