"""The sweep of every folder the app writes (issue #22), on real files in tmp_path.

Files are aged with os.utime (mtime). The sweep dates a file by the later of mtime and ctime, and ctime cannot be
set back, so the sweeps here run on a clock a year ahead (`now=NOW`): every file's ctime is then a year old and
its mtime alone says how old it is. One test runs on the real clock to show why ctime counts; one runs gradio
itself to show that the link states it writes are read as this module expects.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from conftest import free_port, gradient_photo

from stylize.service.housekeeping import DAY, GRADIO_LAYOUT, LINKS, Folder, Housekeeper, missing_files

NOW = time.time() + 365 * DAY
HOUR = 3600.0


def write(path: Path, age: float, size: int = 1000) -> Path:
    """A file of `size` bytes last written `age` seconds before NOW."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (NOW - age, NOW - age))
    return path


def link(cache: Path, link_id: str, age: float, shown: dict[int, Path]) -> Path:
    """A link state as gradio 6.31 writes it (routes.py deep_link): every component's config, a file's value a
    FileData with its path in the cache."""
    components = [{"id": 99, "type": "textbox", "props": {"value": "settings travel too"}}]
    components += [{"id": cid, "type": "image", "props": {"value": {
        "path": str(path), "url": f"/gradio_api/file={path}", "size": None, "orig_name": path.name,
        "mime_type": None, "is_stream": False, "meta": {"_type": "gradio.FileData"}}}} for cid, path in shown.items()]
    state = cache / LINKS / link_id / "state.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(components))
    os.utime(state, (NOW - age, NOW - age))
    return state


TAGS: dict[str, str] = {}  # hash folder name -> the short tag a test gave it


def h(tag: str) -> str:
    """A hash folder's name as gradio makes it (64 hex digits), for a tag the assertions read."""
    name = hashlib.sha256(tag.encode()).hexdigest()
    TAGS[name] = tag
    return name


def names(root: Path) -> set[str]:
    """Files under root, a hash folder named by its tag."""
    rel = (str(p.relative_to(root)).split("/", 1) for p in root.rglob("*") if p.is_file())
    return {"/".join([TAGS.get(parts[0], parts[0]), *parts[1:]]) for parts in rel}


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "gradio"


def keeper(tmp_path, cache, cap=10**9, **kw) -> Housekeeper:
    folders = [Folder(cache, "gradio cache", HOUR, links=True, layout=GRADIO_LAYOUT),
               Folder(tmp_path / "results", "results", 600),
               Folder(tmp_path / "stops", "stop flags", HOUR), Folder(tmp_path / "thumbnails", "thumbnails", None)]
    return Housekeeper(folders, cap, tmp_path, **kw)


def test_old_files_go_young_stay_each_by_its_owners_age(tmp_path, cache):
    write(cache / h("a1") / "image.webp", 2 * HOUR)
    write(cache / h("a2") / "image.webp", 0.5 * HOUR)
    write(tmp_path / "results" / "old.png", 700, size=300)
    write(tmp_path / "results" / "new.png", 300)
    write(tmp_path / "stops" / "k.stop", 700, size=0)
    write(tmp_path / "thumbnails" / "t.jpg", 30 * DAY)  # bounded by what writes it: never swept
    report = keeper(tmp_path, cache).sweep(now=NOW)
    assert names(cache) == {"a2/image.webp"} and not (cache / h("a1")).exists()  # its empty hash folder went too
    assert names(tmp_path / "results") == {"new.png"}
    assert (tmp_path / "stops" / "k.stop").exists() and (tmp_path / "thumbnails" / "t.jpg").exists()
    assert report.removed == {"gradio cache": [1, 1000], "results": [1, 300]} and report.evicted == 0
    assert report.used == 3000 and report.dirs == 1 and cache.is_dir()  # the thumbnail counts, never goes


def test_a_link_keeps_its_files_for_the_link_lifetime_then_all_go(tmp_path, cache):
    photo = write(cache / h("u1") / "photo.png", 2 * DAY)
    result = write(cache / h("r1") / "image.jpeg", 3 * DAY)
    write(cache / h("p1") / "image.jpeg", 2 * DAY)  # a preview no link shows
    state = link(cache, "abcDEF_-123", 2 * DAY, {1: photo, 3: result})
    hk = keeper(tmp_path, cache)
    hk.sweep(now=NOW)
    assert names(cache) == {"u1/photo.png", "r1/image.jpeg", f"{LINKS}/abcDEF_-123/state.json"}
    assert missing_files(cache, "abcDEF_-123") == {}
    state_size = state.stat().st_size
    os.utime(state, (NOW - 8 * DAY, NOW - 8 * DAY))
    report = hk.sweep(now=NOW)
    assert names(cache) == set() and report.removed == {"gradio cache": [3, 2000 + state_size]}
    assert [p.name for p in cache.iterdir()] == [LINKS]  # deep_links/<id>/ and the hash folders; gradio's own stays
    assert missing_files(cache, "abcDEF_-123") is None


def test_the_newest_link_showing_a_file_dates_it(tmp_path, cache):
    photo = write(cache / h("u1") / "photo.png", 9 * DAY)
    link(cache, "old", 8 * DAY, {1: photo})  # expired: it no longer keeps the photo, but the newer one does
    link(cache, "new", 1 * DAY, {1: photo})
    keeper(tmp_path, cache).sweep(now=NOW)
    assert names(cache) == {"u1/photo.png", f"{LINKS}/new/state.json"}


def test_the_cap_evicts_the_oldest_first_and_link_states_last(tmp_path, cache):
    for minutes in (10, 20, 30, 40):
        write(cache / h(f"h{minutes}") / "image.webp", minutes * 60)
    linked = write(cache / h("l1") / "photo.png", 3 * DAY + 60)  # lives as long as its 3-day-old link: the oldest
    link(cache, "L", 3 * DAY, {1: linked})
    write(tmp_path / "stops" / "k.stop", 50 * 60, size=0)  # a Stop pressed while queued: frees nothing, stays
    state_size = (cache / LINKS / "L" / "state.json").stat().st_size
    report = keeper(tmp_path, cache, cap=2000 + state_size).sweep(now=NOW)
    assert names(cache) == {"h10/image.webp", "h20/image.webp", f"{LINKS}/L/state.json"}
    assert (tmp_path / "stops" / "k.stop").exists()
    assert report.evicted == 3 and report.used == 2000 + state_size and not report.over_cap
    assert missing_files(cache, "L") == {1: [os.path.realpath(linked)]}  # the page says so, settings still apply


def test_files_within_the_grace_period_and_kept_files_are_never_removed(tmp_path, cache):
    running = write(cache / h("run") / "image.webp", 30)  # a run in progress
    default = write(cache / h("d") / "default.png", 5 * DAY)  # gradio's copy of a default value: every page shows it
    write(cache / h("old") / "image.webp", 1000)
    report = keeper(tmp_path, cache, cap=0, grace=120, keep=lambda: [str(default)]).sweep(now=NOW)
    assert names(cache) == {"run/image.webp", "d/default.png"} and running.exists()
    assert report.over_cap and report.used == 2000 and report.evicted == 1


def test_a_copy_gradio_makes_of_an_old_file_counts_as_new(tmp_path, cache):
    """Real clock: shutil.copy2 (how gradio copies a handler's file into its cache) keeps the source's old mtime."""
    source = tmp_path / "thumbnails" / "t.jpg"
    source.parent.mkdir()
    source.write_bytes(b"jpeg")
    two_days_ago = time.time() - 2 * DAY
    os.utime(source, (two_days_ago, two_days_ago))
    copy = cache / h("h") / "t.jpg"
    copy.parent.mkdir(parents=True)
    shutil.copy2(source, copy)
    assert copy.stat().st_mtime == pytest.approx(two_days_ago)
    keeper(tmp_path, cache).sweep()
    assert copy.exists()


def test_concurrent_sweeps_remove_each_file_once(tmp_path, cache):
    for i in range(300):
        write(cache / h(f"h{i}") / "image.webp", 2 * HOUR)
    for i in range(20):
        write(cache / f"y{i}" / "image.webp", 60)
    keepers = [keeper(tmp_path, cache), keeper(tmp_path, cache)]  # two sweepers on one folder, as two processes
    reports, errors = [], []

    def run(hk: Housekeeper) -> None:
        try:
            for _ in range(5):
                if (report := hk.sweep(now=NOW)) is not None:
                    reports.append(report)
        except Exception as err:  # noqa: BLE001 — any error fails the test below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(keepers[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and reports
    assert names(cache) == {f"y{i}/image.webp" for i in range(20)}
    assert sum(r.files for r in reports) == 300 and sum(r.bytes for r in reports) == 300 * 1000


def test_missing_files_names_no_link_outside_the_links_folder(tmp_path, cache):
    write(cache / "h" / "state.json", 0)  # anyone can upload a file named state.json
    assert missing_files(cache, "../h") is None and missing_files(cache, "h/..") is None
    assert missing_files(cache, "nosuchlink") is None


def test_gradio_link_states_are_read_as_written(tmp_path, monkeypatch):
    """Gradio itself writes the link; its files outlive their hour; once gone, the link still opens."""
    import gradio as gr
    import httpx
    import numpy as np
    from gradio_client import Client, handle_file

    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    with gr.Blocks() as demo:
        photo, result = gr.Image(), gr.Image()
        gr.Button().click(lambda p: np.asarray(p)[::-1], photo, result, api_name="run")
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        gradient_photo().save(tmp_path / "photo.png")
        client = Client(url, verbose=False, download_files=False)
        client.predict(handle_file(str(tmp_path / "photo.png")), api_name="/run")
        link_id = httpx.get(f"{url}gradio_api/deep_link", params={"session_hash": client.session_hash}).json()
        for path in cache.rglob("*"):
            os.utime(path, (NOW - 2 * DAY, NOW - 2 * DAY))
        hk = Housekeeper([Folder(cache, "gradio cache", HOUR, links=True, layout=GRADIO_LAYOUT)], 10**9, tmp_path)
        hk.sweep(now=NOW)
        assert missing_files(cache, link_id) == {} and len(names(cache)) == 3  # the two images and the state
        hk.cap = next((cache / LINKS).rglob("state.json")).stat().st_size
        hk.sweep(now=NOW)  # the cap takes the images first, the state stays
        assert sorted(missing_files(cache, link_id)) == sorted([photo._id, result._id])
        assert names(cache) == {f"{LINKS}/{link_id}/state.json"}
        page = httpx.get(url, params={"deep_link": link_id}).text
        assert '"deep_link_state":"valid"' in page.replace(" ", "")
    finally:
        demo.close()
