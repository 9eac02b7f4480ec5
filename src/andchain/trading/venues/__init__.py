"""Venues: where the desk sees prices and hedges (the port, the replay venue)."""
