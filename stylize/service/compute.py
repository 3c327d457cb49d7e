"""Around the compute thread: its place behind the web server's threads in CPU priority, runs closed without ever
making the server wait, and a GPU out-of-memory error as a message. The thread itself is the scheduler's
(scheduler.py)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Iterator

from stylize.errors import StylizeError

log = logging.getLogger(__name__)

COMPUTE_NICENESS = 10  # Linux's scheduler then gives the server's threads ~10× the compute threads' share


def behind_the_server(niceness: int = COMPUTE_NICENESS) -> None:
    """Lower the calling thread's CPU priority, so that on a CPU shared by a run and the web server the server
    goes first: a page or a preview waiting behind a run's convolutions is what a visitor notices; a run slowed
    for the second a page takes is not. Called on the compute thread before its first torch call: torch's OpenMP
    workers, created by that thread, inherit the priority. Linux only (elsewhere a thread id is no process id)."""
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + niceness))
    except OSError as exc:  # costs the page's speed only
        log.warning("could not lower the compute thread's priority: %s", exc)


def closing_in_background(items: Iterator) -> Iterator:
    """Yield from `items`; if the consumer stops early (a cancel, a client gone), close `items` on a short-lived
    thread instead of waiting for it. Closing ZeroGPU's wrapper waits for the worker process to finish its step,
    and a cancel arrives on the web server's event-loop thread, which must never wait."""
    finished = False
    try:
        for item in items:
            yield item
        finished = True
    finally:
        if not finished:
            threading.Thread(target=items.close, daemon=True, name="stylize-close").start()


def out_of_memory_as_message(items: Iterator) -> Iterator:
    """`items`, with a GPU out-of-memory error turned into one message with what to change; the memory the run
    held is handed back to the device first, so the next request starts clean."""
    import torch

    try:
        yield from items
    except torch.OutOfMemoryError:
        items.close()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise StylizeError("the GPU ran out of memory: use a smaller size, or fewer presets or grid cells") from None
