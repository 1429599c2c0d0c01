"""Worker processes that end with the process that started them.

A ``kill -9`` of a command gives it no chance to stop its pool: ``ProcessPoolExecutor`` workers
(children of the forkserver, not of the command) then live on, holding memory and writing output.
``die_with(pid)``, called first thing in a worker, makes the worker end when process ``pid`` ends,
in two ways: Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills
the worker when its own parent, the forkserver, exits) and a watchdog thread that polls ``pid``
(the command itself, which is not the worker's parent under forkserver or spawn) twice a second.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

__all__ = ["die_with", "process_alive"]

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCHDOG_INTERVAL_S = 0.5


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The state follows the parenthesised command name, which may itself hold ") ".
            return f.read().rsplit(b") ", 1)[1][:1] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): signal 0 tests existence only
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _parent_death_signal() -> bool:
    """Asks the kernel to SIGKILL this process when its parent exits (Linux); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    return False


def _watch(pid: int) -> None:
    while process_alive(pid):
        time.sleep(WATCHDOG_INTERVAL_S)
    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup handlers: the command that wanted the output is gone


def die_with(pid: int) -> None:
    """Ends this process (SIGKILL) when process ``pid`` ends, and when this process's parent ends.
    Call it in a worker's initializer with the pid of the command (``os.getpid()`` there)."""
    parent = os.getppid()
    _parent_death_signal()
    if not process_alive(parent):  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=_watch, args=(pid,), name=f"die-with-{pid}", daemon=True).start()
