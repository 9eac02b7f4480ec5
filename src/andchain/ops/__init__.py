"""Operations: the one durable state machine for every external side effect (an outbox)."""

from andchain.ops.core import (
    TERMINAL,
    Operation,
    Operations,
    OpStatus,
)

__all__ = ["TERMINAL", "OpStatus", "Operation", "Operations"]
