"""What the web app writes, bounded: every folder registered with its owner and age, one disk cap
($STYLIZE_DISK_CAP_GB), and a sweep every minute on a daemon thread (stylize/housekeeping.py). A shared link
("Share this page with your images") keeps its images LINK_DAYS days, within the cap; a link whose images are gone
opens with its settings and one message."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from stylize.service import storage
from stylize.service.housekeeping import DAY, Folder, Housekeeper, missing_files

log = logging.getLogger("stylize.disk")
CACHE = Path(get_upload_folder())  # gradio's: uploads, previews, results shown, MCP inputs, editor layers, links
LINK_DAYS = 7
HOUR = 3600.0
EXPIRED = (f"This shared link's images have expired (a link keeps them {LINK_DAYS} days); its settings are applied: "
           "add a photo to run it again.")


def housekeeper(demo: gr.Blocks) -> Housekeeper:
    """The app's folders, each with its owner and age, under one cap. Files gradio keeps for every page (the
    default values and examples it copied into its cache) are never swept."""
    def shown_to_every_page() -> set[str]:
        return {str(p) for block in demo.blocks.values() for p in getattr(block, "keep_in_cache", ())}

    folders = [Folder(CACHE, "gradio cache (uploads, previews, results shown, MCP inputs, editor layers, links)", HOUR,
                      links=True),
               Folder(storage.folder("results"), "result PNGs (gradio copies them when shown)", 600),
               Folder(storage.folder("regions"), "region editor backgrounds", HOUR),
               Folder(storage.folder("stops"), "stop flags (longer than any queue wait)", 6 * HOUR),
               Folder(storage.folder("thumbnails"), "copies of shipped images", None)]
    cap = int(float(os.environ.get("STYLIZE_DISK_CAP_GB", 5)) * 1e9)
    return Housekeeper(folders, cap=cap, link_age=LINK_DAYS * DAY, keep=shown_to_every_page)


def start_sweeping(keeper: Housekeeper, every: float = 60.0) -> threading.Thread:
    """Sweep now (what an earlier process left) and then every `every` seconds, logging what went."""
    def loop() -> None:
        while True:
            try:
                report = keeper.sweep(force=True)
                if report is not None and (report.files or report.over_cap):
                    log.info("%s", report)
            except Exception:  # the next sweep tries again; serving goes on
                log.exception("sweep failed")
            stop.wait(every)

    stop = threading.Event()
    thread = threading.Thread(target=loop, daemon=True, name="stylize-sweep")
    thread.start()
    return thread


def expired(link_id: str | None) -> bool:
    """Whether a shared page's images are gone (its settings are still there)."""
    return bool(link_id) and bool(missing_files(CACHE, str(link_id)))
