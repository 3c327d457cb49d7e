"""One scheduler owns the engine: every run (Stylize, each Compare batch, each Explore grid, from the page, the API
or MCP) is a ticket it steps on its one compute thread, and runs whose current levels have the same shape step
together in one network pass (continuous batching, as LLM servers batch tokens; here a token is an L-BFGS step).

The policy, in three sentences (README, *Many visitors at once*):

1. Between steps, the scheduler picks the active run that has had the least of the machine's time so far (a
   shared pass counts for each run its share, by items) and steps it together with every active run of the same
   shape, so a newcomer's first image comes after about one step of whatever runs now.
2. Runs that cannot share a pass therefore take turns weighted by what their steps cost, and a long run gets its
   share and no more: short runs that start after it finish before it.
3. At most `max_active` runs whose memory fits `memory_bytes` are active at once; the others wait in line, in
   order of arrival, told their place and when they should finish.

A reader's iterator (`Scheduler.frames`) yields `Waiting` while its run waits and then the run's reported frames
(the newest only, if the reader is slower than the run; the last one always). Closing it (Stop ends the run
through its own `should_stop`; a closed tab or a cancelled API job closes the iterator) takes the run out before
its next step and frees its memory at once. With `max_active=1` the scheduler serves runs one after another, as
the app did before it (the setting the crowd benchmark compares against).
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from collections import deque
from typing import Callable, Iterator, Sequence

from stylize.engine.loop import Frame, Run, step_together
from stylize.engine.updates import Waiting

log = logging.getLogger(__name__)


class Closed(RuntimeError):
    """The scheduler closed (the process is exiting) before the run ended."""


def finish_times(active: Sequence[float], waiting: Sequence[float], slots: int) -> tuple[list[float], list[float]]:
    """When each run should end, in seconds from now, if the machine is shared equally by the active runs (each
    needing `active[i]` seconds alone) and a waiting run starts, in order, when an active one ends and a slot is
    free. Batching's gains are left out: estimates err late, not early."""
    remaining = {("a", i): r for i, r in enumerate(active)}
    line = deque(("w", i) for i in range(len(waiting)))
    need = {**remaining, **{("w", i): r for i, r in enumerate(waiting)}}
    running = dict(remaining)
    while line and len(running) < slots:
        key = line.popleft()
        running[key] = need[key]
    ends, now = {}, 0.0
    while running:
        shortest = min(running.values())
        now += shortest * len(running)
        for key in list(running):
            running[key] -= shortest
            if running[key] <= 1e-12:
                ends[key] = now
                del running[key]
        while line and len(running) < slots:
            key = line.popleft()
            running[key] = need[key]
    return [ends[("a", i)] for i in range(len(active))], [ends[("w", i)] for i in range(len(waiting))]


class Ticket:
    """A run handed to the scheduler, and the one-slot mailbox its reader takes frames from."""

    def __init__(self, run: Run, memory: float) -> None:
        self.run, self.memory = run, memory
        self.arrived = time.perf_counter()
        self.service = 0.0  # seconds of the machine's time this run has had
        self.item: Frame | Waiting | None = None  # the newest undelivered frame or place in line
        self.ended = False  # the run finished, failed or was taken out: no more items after `item`
        self.error: BaseException | None = None
        self.cancelled = False


class Scheduler:
    """Steps every submitted run on one thread, batching same-shape runs and sharing the machine fairly."""

    def __init__(self, max_active: int, memory_bytes: float, seconds_left: Callable[[Run], float],
                 initializer: Callable[[], None] | None = None) -> None:
        """`seconds_left(run)`: the time a run still needs by itself (the studio's time model)."""
        self.max_active, self.memory_bytes = max(1, max_active), memory_bytes
        self.seconds_left = seconds_left
        self._initializer = initializer
        self._cond = threading.Condition()
        self._active: list[Ticket] = []
        self._waiting: deque[Ticket] = deque()
        self._thread: threading.Thread | None = None
        self._closing = False
        self.thread_name = "stylize-compute"

    # ---- the readers' side -----------------------------------------------------------------------------------

    def frames(self, run: Run, memory: float = 0.0) -> Iterator[Frame | Waiting]:
        """Submit `run` and stream it: `Waiting` while it waits, then its reported frames; closing the iterator
        takes the run out at its next step. A run's own error is raised here after the frames before it."""
        ticket = Ticket(run, memory)
        with self._cond:
            self._waiting.append(ticket)
            self._admit()
            self._start()
            self._tell_the_line()
            self._cond.notify_all()
        try:
            while True:
                with self._cond:
                    while ticket.item is None and not ticket.ended:
                        self._cond.wait()
                    item, ticket.item = ticket.item, None
                if item is None:
                    if ticket.error is not None:
                        raise ticket.error
                    return
                yield item
        finally:
            with self._cond:
                if not ticket.ended:
                    ticket.cancelled = True
                    self._cond.notify_all()

    def load(self) -> tuple[int, int]:
        """(runs active, runs waiting) now."""
        with self._cond:
            return len(self._active), len(self._waiting)

    def estimate(self, alone_s: float) -> float:
        """When a run that takes `alone_s` seconds by itself would end if it arrived now, given the runs here."""
        with self._cond:
            active, waiting = self._remaining()
        _, ends = finish_times(active, [*waiting, alone_s], self.max_active)
        return ends[-1]

    # ---- the compute thread ----------------------------------------------------------------------------------

    def close(self, timeout: float = 60.0) -> None:
        """End every run and stop the compute thread after its current step: at the interpreter's exit, a thread
        inside a torch call when the process tears down aborts it ("terminate called without an active
        exception")."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self.thread_name, daemon=True)
            self._thread.start()
            atexit.register(self.close)

    def _serve(self) -> None:
        if self._initializer is not None:
            self._initializer()
        while True:
            with self._cond:
                self._take_out_cancelled()
                while not self._active and not self._closing:
                    self._cond.wait()
                    self._take_out_cancelled()
                if self._closing:
                    for ticket in [*self._active, *self._waiting]:
                        self._end(ticket, Closed("the server is shutting down"))
                    self._cond.notify_all()
                    return
                group = self._pick()
            try:
                frames = step_together([t.run for t in group])
                with self._cond:
                    self._deliver(group, frames)
            except BaseException as exc:  # the shared pass failed (out of memory): its runs end, the others go on
                log.warning("a step of %d run(s) failed: %r", len(group), exc)
                with self._cond:
                    for ticket in group:
                        if not ticket.ended:
                            self._end(ticket, exc)
                    self._admit()
            with self._cond:
                self._cond.notify_all()

    def _pick(self) -> list[Ticket]:
        """The run that has had the least time (the earliest arrival among equals), with every active run of its
        shape, in order of arrival."""
        first = min(self._active, key=lambda t: (t.service, t.arrived))
        shape = first.run.shape
        return [t for t in self._active if t.run.shape == shape]

    def _deliver(self, group: list[Ticket], frames: list[Frame | None]) -> None:
        for ticket, frame in zip(group, frames):
            ticket.service = ticket.run.compute
            if frame is None:
                self._end(ticket, ticket.run.error)
            elif frame.images is not None or ticket.run.finished:
                ticket.item = frame
            if ticket.run.finished and not ticket.ended:
                self._end(ticket)
        ends, _ = finish_times(*self._remaining(), self.max_active)
        for ticket, end in zip(self._active, ends):
            if isinstance(ticket.item, Frame) and ticket.item.images is not None:
                ticket.item.eta_s = end
        self._admit()
        self._tell_the_line()

    def _end(self, ticket: Ticket, error: BaseException | None = None) -> None:
        """Take a run out and let go of its memory now."""
        ticket.ended, ticket.error = True, error
        if ticket in self._active:
            self._active.remove(ticket)
        elif ticket in self._waiting:
            self._waiting.remove(ticket)
        ticket.run.release()

    def _take_out_cancelled(self) -> None:
        for ticket in [t for t in (*self._active, *self._waiting) if t.cancelled]:
            self._end(ticket)
        self._admit()

    def _admit(self) -> None:
        """Move waiting runs in, in order, while a slot is free and their memory fits (one always may run)."""
        while self._waiting and len(self._active) < self.max_active:
            used = sum(t.memory for t in self._active)
            if self._active and used + self._waiting[0].memory > self.memory_bytes:
                break
            self._active.append(self._waiting.popleft())

    def _remaining(self) -> tuple[list[float], list[float]]:
        return ([self.seconds_left(t.run) for t in self._active], [self.seconds_left(t.run) for t in self._waiting])

    def _tell_the_line(self) -> None:
        """Every waiting run's place and expected end, as its reader's next item (unless it has one unread)."""
        if not self._waiting:
            return
        _, ends = finish_times(*self._remaining(), self.max_active)
        for place, (ticket, end) in enumerate(zip(self._waiting, ends), 1):
            if ticket.item is None or isinstance(ticket.item, Waiting):
                ticket.item = Waiting(place, len(self._active), end if math.isfinite(end) else math.nan)
