"""What the web app writes, bounded: every folder registered with its owner and age, one disk cap
($STYLIZE_DISK_CAP_GB), and a sweep every minute on a daemon thread (stylize/housekeeping.py). A shared link
("Share this page with your images") keeps its images LINK_DAYS days, within the cap; a link whose images are gone
opens with its settings and one message."""

from __future__ import annotations

import logging
import os
import re
import threading
import time

import gradio as gr
from gradio.utils import get_upload_folder

from stylize.service import storage
from stylize.service.housekeeping import DAY, GRADIO_LAYOUT, Folder, Housekeeper, missing_files

log = logging.getLogger("stylize.disk")
CACHE = storage.folder("gradio")  # gradio's (app.py points it here): uploads, previews, results shown, MCP inputs, …
PART = r"(\.{0}\.[0-9a-f]{{8}}\.part|{0})"  # storage.py writes a file under a partial name, then renames it
LAYOUTS = {"results": re.compile(PART.format(r"(stylized-[0-9a-f]{12}|stylize-[0-9]+x[0-9]+-[0-9a-f]{8})\.png")),
           "regions": re.compile(PART.format(r"photo-[0-9a-f]{12}\.jpg")),
           "stops": re.compile(r"[0-9a-f]{32}\.stop"),
           "thumbnails": re.compile(PART.format(r"[^/]+-[0-9a-f]{16}\.(jpg|png)"))}
LINK_DAYS = 7
HOUR = 3600.0
EXPIRED = (f"This shared link's images have expired (a link keeps them {LINK_DAYS} days); its settings are applied: "
           "add a photo to run it again.")


def housekeeper(demo: gr.Blocks) -> Housekeeper:
    """The app's folders, each with its owner and age, under one cap. Files gradio keeps for every page (the
    default values and examples it copied into its cache) and the files of a run in progress are never swept."""
    def shown_to_every_page() -> set[str]:
        return {str(p) for block in demo.blocks.values() for p in getattr(block, "keep_in_cache", ())} | storage.held()

    folders = [Folder(storage.folder(kind), purpose, age, layout=LAYOUTS[kind]) for kind, purpose, age in (
        ("results", "result PNGs (gradio copies them when shown)", 600),
        ("regions", "region editor backgrounds", HOUR),
        ("stops", "stop flags (longer than any queue wait)", 6 * HOUR),
        ("thumbnails", "copies of shipped images", None))]
    if os.path.realpath(get_upload_folder()) == str(CACHE):
        folders.append(Folder(CACHE, "gradio cache (uploads, previews, results shown, MCP inputs, editor layers, "
                              "links)", HOUR, links=True, layout=GRADIO_LAYOUT))
    else:  # gradio was imported before app.py set its folder: what it writes is not the app's to sweep
        log.warning("gradio writes to %s, outside %s: not swept (import app before gradio)", get_upload_folder(),
                    storage.root())
    cap = int(float(os.environ.get("STYLIZE_DISK_CAP_GB", 5)) * 1e9)
    return Housekeeper(folders, cap=cap, root=storage.root(), link_age=LINK_DAYS * DAY, keep=shown_to_every_page)


def start_sweeping(keeper: Housekeeper, every: float = 60.0) -> threading.Thread:
    """Sweep now (what an earlier process left) and then every `every` seconds, logging what went."""
    def loop() -> None:
        while True:
            try:
                report = keeper.sweep()
                if report is not None and (report.files or report.over_cap):
                    log.info("%s", report)
            except Exception:  # the next sweep tries again; serving goes on
                log.exception("sweep failed")
            time.sleep(every)

    thread = threading.Thread(target=loop, daemon=True, name="stylize-sweep")
    thread.start()
    return thread


def expired(link_id: str | None) -> bool:
    """Whether a shared page's images are gone (its settings are still there)."""
    return bool(link_id) and bool(missing_files(CACHE, str(link_id)))
