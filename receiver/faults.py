"""Fault injection for the test suite: make one stage raise, stall or die on demand.

The fault-injection tests start the real daemon with THREADS_RECEIVER_TEST_FAULTS set, for
example `writer=raise@1,verifier=stall:30@2`: the writer raises in its first batch, the
verifier stalls for 30 seconds in its second check. Without the variable every hook is
one dictionary look-up that finds nothing. Actions:

- `raise`: an ordinary exception, as a bug in one message or one batch would raise;
- `die`: a `StageDeath` (a BaseException, like a thread killed from outside) that no
  `except Exception` catches, so the stage's thread ends;
- `stall:SECONDS`: the stage sleeps, as one stuck on a lock or a hung call would.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

ENV = "THREADS_RECEIVER_TEST_FAULTS"


class InjectedFault(Exception):
    """Raised by a `raise` fault."""


class StageDeath(BaseException):
    """Raised by a `die` fault: ends the thread it is raised in."""


@dataclass
class _Fault:
    action: str
    seconds: float
    at: int


def parse_spec(spec: str) -> dict[str, _Fault]:
    """`stage=action[:seconds][@n],...` → {stage: fault}; n counts the stage's hits from 1."""
    faults: dict[str, _Fault] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        stage, _, rest = item.partition("=")
        action, _, at = rest.partition("@")
        action, _, seconds = action.partition(":")
        if action not in ("raise", "die", "stall"):
            raise ValueError(f"{ENV}: unknown action {action!r} in {item!r}")
        faults[stage.strip()] = _Fault(action, float(seconds or 0), int(at or 1))
    return faults


_faults = parse_spec(os.environ.get(ENV, ""))
_hits: dict[str, int] = {}
_lock = threading.Lock()


def hit(stage: str) -> None:
    """Called by `stage` at the point where a real fault would strike."""
    fault = _faults.get(stage)
    if fault is None:
        return
    with _lock:
        _hits[stage] = n = _hits.get(stage, 0) + 1
    if n != fault.at:
        return
    if fault.action == "raise":
        raise InjectedFault(f"injected fault in {stage}")
    if fault.action == "die":
        raise StageDeath(f"injected death of {stage}")
    time.sleep(fault.seconds)
