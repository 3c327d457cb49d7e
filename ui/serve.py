"""How the app is served: the queue (as many runs at once as the scheduler admits), the upload cap, the MCP server,
the disk sweep."""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path

import gradio as gr

from stylize.cost.budget import admission

from . import disk, mcp
from .service import studio

MAX_UPLOAD = "10mb"  # = stylize.inputs.MAX_UPLOAD_BYTES
CSS = (Path(__file__).parent / "style.css").read_text()
log = logging.getLogger("stylize.app")


def quiet_refusals(demo: gr.Blocks) -> None:
    """Gradio's own input checks (a number over its maximum, a choice not offered) raise a gr.Error that prints
    a traceback per refusal; here each is one log line, and the visitor gets the same message. The method is
    public in gradio 6.31 (tests/test_app.py fails if it goes)."""
    checked = demo.preprocess_data

    async def preprocess_data(*args, **kwargs):
        try:
            return await checked(*args, **kwargs)
        except gr.Error as exc:
            if exc.print_exception:
                log.info("refused input: %s", exc.message)
                exc.print_exception = False
            raise

    demo.preprocess_data = preprocess_data


def concurrency() -> int:
    """Events of one kind served at once: twice the runs the scheduler keeps active (the others wait in its line,
    told their place and ETA); on ZeroGPU, where each run works in its own worker with its own GPU slice, the
    same number, so visitors get their slices side by side instead of one after another."""
    scheduler = studio.scheduler
    active = scheduler.max_active if scheduler is not None else admission(studio.device.type, float("inf"))[0]
    return 2 * active


def launch(demo: gr.Blocks, **overrides):
    """Queue and serve: each event as many at once as the scheduler admits runs, and as many again waiting in its
    line with their place and ETA (the rest wait in Gradio's queue); uploads capped, monitoring off, MCP on, the
    app's files swept."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    mcp.install()
    quiet_refusals(demo)
    disk.start_sweeping(disk.housekeeper(demo))
    demo.queue(max_size=int(os.environ.get("STYLIZE_QUEUE_SIZE", 32)),
               default_concurrency_limit=concurrency())
    # Private attributes, kept because they pay: Gradio's queue polls every 1 ms when idle, which on 2 cores took
    # 12 % of a run's speed (README, Performance). tests/test_app.py fails if a Gradio upgrade removes them.
    demo._queue.sleep_when_free = max(demo._queue.sleep_when_free, 0.05)
    demo._queue.progress_update_sleep_when_free = max(demo._queue.progress_update_sleep_when_free, 0.1)
    # Start-up leaves ~345,000 long-lived objects (torch, gradio, their modules); frozen, the collector's full
    # passes skip them instead of pausing every thread of the server for 0.1–0.4 s (README, Files and disk).
    gc.collect()
    gc.freeze()
    options = dict(max_file_size=MAX_UPLOAD, enable_monitoring=False, css=CSS, theme=gr.themes.Soft(), mcp_server=True)
    return demo.launch(**{**options, **overrides})
