"""Events: every state change a user cares about, with a monotonic id, stored in the change's own
transaction; read with a cursor or a server-sent event stream, and delivered to webhooks."""

from andchain.events.store import EVENT_TYPES, Event, EventLog, NewEvent, Page, append, type_filter

__all__ = ["EVENT_TYPES", "Event", "EventLog", "NewEvent", "Page", "append", "type_filter"]
