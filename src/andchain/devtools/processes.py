"""Process helpers for the local services andchain starts."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process exists (a zombie child of ours is reaped and counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True
