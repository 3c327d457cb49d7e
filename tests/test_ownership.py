"""Issue #30: the app writes only into a folder it made (or found empty) and deletes only what it can prove it
wrote. Real folders and files; the clock moved with libfaketime for the app itself."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, free_port

from stylize.service import storage
from stylize.service.housekeeping import DAY, GRADIO_LAYOUT, Folder, Housekeeper

NOW = time.time() + 365 * DAY  # every file's ctime is a year old to the sweep
FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


def plant(path: Path, text: str = "mine") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (NOW - 30 * DAY, NOW - 30 * DAY))
    return path


def hex64(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()


# ---- the root -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where, reason", [("/", "file system's root"), ("~", "home folder"),
                                           ("TMP", "system's temp folder")])
def test_a_shared_system_folder_is_refused_with_what_to_set(where, reason):
    import tempfile

    configured = tempfile.gettempdir() if where == "TMP" else where
    with pytest.raises(storage.RootError, match=reason) as refused:
        storage.claim(configured)
    assert f"Set {storage.ROOT_ENV} to an empty folder" in str(refused.value) and "\n" not in str(refused.value)


def test_a_folder_with_foreign_files_or_of_another_user_is_refused_and_untouched(tmp_path):
    notes = plant(tmp_path / "thesis" / "my_notes.txt")
    with pytest.raises(storage.RootError, match="holds files stylize did not write"):
        storage.claim(str(tmp_path / "thesis"))
    assert notes.read_text() == "mine" and not (tmp_path / "thesis" / storage.MARKER).exists()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534) if os.geteuid() == 0 else pytest.skip("needs root to make another user's folder")
    with pytest.raises(storage.RootError, match="belongs to another user"):
        storage.claim(str(theirs))


def test_an_empty_or_absent_folder_becomes_private_and_marked_and_is_adopted_again(tmp_path):
    made = storage.claim(str(tmp_path / "data" / "stylize"))
    assert made == tmp_path / "data" / "stylize" and (made / storage.MARKER).is_file()
    assert (made.stat().st_mode & 0o777) == 0o700
    marker = (made / storage.MARKER).read_text()
    (made / "results").mkdir()
    assert storage.claim(str(made)) == made and (made / storage.MARKER).read_text() == marker  # a restart keeps it


def test_the_default_folder_taken_by_a_link_gives_a_fresh_private_one(tmp_path, monkeypatch, caplog):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / f"stylize-{os.geteuid()}").symlink_to(target)  # pre-created by someone else
    made = storage.claim(None)
    assert made.parent == tmp_path and made.name.startswith("stylize-") and not made.is_symlink()
    assert (made.stat().st_mode & 0o777) == 0o700 and (made / storage.MARKER).is_file()
    assert list(target.iterdir()) == [] and "not used" in caplog.text


# ---- the sweep ----------------------------------------------------------------------------------------------

def keeper(root: Path, cap: int = 10**9) -> Housekeeper:
    return Housekeeper([Folder(root / "gradio", "gradio cache", 3600, links=True, layout=GRADIO_LAYOUT),
                        Folder(root / "results", "results", 600)], cap, root)


def test_foreign_files_and_links_are_never_touched_however_old(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    ours = plant(root / "gradio" / hex64("a") / "image.webp")
    foreign = [plant(root / "gradio" / "my_notes.txt"), plant(root / "gradio" / "sub" / "chapter1.tex"),
               plant(root / "gradio" / hex64("b") / "deeper" / "file.txt"), plant(root / "results" / "x" / "y.png")]
    precious = plant(outside / "precious.txt")
    plant(outside / "dir" / "also.png")
    (root / "gradio" / hex64("c")).symlink_to(outside / "dir")  # a hash folder that is a link
    (root / "gradio" / hex64("d")).mkdir()
    (root / "gradio" / hex64("d") / "image.webp").symlink_to(precious)  # a file that is a link
    (root / "results" / "stylized-0123456789ab.png").symlink_to(precious)
    report = keeper(root).sweep(now=NOW)
    assert not ours.exists() and report.files == 1
    assert all(p.read_text() == "mine" for p in foreign) and precious.exists() and (outside / "dir" / "also.png").exists()
    assert (root / "gradio" / hex64("c")).is_symlink() and (root / "gradio" / hex64("d") / "image.webp").is_symlink()


def test_a_folder_outside_the_root_or_twice_is_refused(tmp_path):
    with pytest.raises(ValueError, match="outside"):
        Housekeeper([Folder(tmp_path / "data", "data", 1)], 1, tmp_path / "root")
    with pytest.raises(ValueError, match="twice"):
        Housekeeper([Folder(tmp_path / "a", "a", 1), Folder(tmp_path / "a", "b", 1)], 1, tmp_path)


def test_nested_folders_each_file_swept_by_its_own_owner(tmp_path):
    """A folder inside another (the cache at the root, results below it) is swept by its own rules only."""
    results = plant(tmp_path / "results" / "stylized-0123456789ab.png")
    os.utime(results, (NOW - 300, NOW - 300))  # 5 min: young for results (10 min), old for the outer folder (1 s)
    hk = Housekeeper([Folder(tmp_path, "outer", 1, layout=re.compile(r"results/[^/]+")),
                      Folder(tmp_path / "results", "results", 600)], 10**9, tmp_path)
    assert hk.sweep(now=NOW).files == 0 and results.exists()
    os.utime(results, (NOW - 700, NOW - 700))
    assert hk.sweep(now=NOW).removed == {"results": [1, 4]}


def test_an_undeletable_file_is_logged_once_and_the_cap_still_holds(tmp_path, caplog):
    root = tmp_path / "root"
    stuck = plant(root / "results" / "stylized-00000000000a.png", "x" * 1000)
    others = [plant(root / "results" / f"stylized-00000000000{i}.png", "x" * 1000) for i in range(3)]
    for n, path in enumerate([stuck, *others]):
        os.utime(path, (NOW - 500 + n, NOW - 500 + n))  # young for their age: only the cap can take them
    if subprocess.run(["chattr", "+i", str(stuck)], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here")
    try:
        hk = keeper(root, cap=2000)
        first, second = hk.sweep(now=NOW), hk.sweep(now=NOW)
    finally:
        subprocess.run(["chattr", "-i", str(stuck)])
    assert stuck.exists() and sum(p.exists() for p in others) == 1  # the oldest could not go: two others did
    assert first.used == 2000 and not first.over_cap and second.files == 0
    assert caplog.text.count("cannot remove") == 1


def test_an_unreadable_folder_is_passed_over(tmp_path):
    """The sweep runs as a user who cannot read one hash folder (root owns it, mode 000): it sweeps the rest."""
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("needs root to sweep as another user")
    root = Path(tempfile.mkdtemp(prefix="stylize-test-"))  # in /tmp: traversable by the other user
    try:
        old = plant(root / "gradio" / hex64("a") / "image.webp")
        locked = plant(root / "gradio" / hex64("b") / "image.webp")
        for path in [root, *root.rglob("*")]:
            os.chown(path, 65534, 65534)
        os.chown(locked.parent, 0, 0)
        os.chmod(locked.parent, 0o000)
        code = ("import os, sys; from pathlib import Path; from stylize.service.housekeeping import *; os.setuid(65534); "
                "root = Path(sys.argv[1]); print(Housekeeper([Folder(root / 'gradio', 'cache', 3600, links=True, "
                "layout=GRADIO_LAYOUT)], 10**9, root).sweep(now=float(sys.argv[2])).files)")
        out = subprocess.run([sys.executable, "-c", code, str(root), str(NOW)], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
        os.chmod(locked.parent, 0o700)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split() == ["1"] and not old.exists() and locked.exists()
    finally:
        os.chmod(root / "gradio" / hex64("b"), 0o700)
        shutil.rmtree(root)


# ---- the app, its clock two days ahead ----------------------------------------------------------------------

@pytest.mark.skipif(not FAKETIME.exists() and not os.environ.get("CI"), reason="apt-get install faketime (make browser)")
def test_the_app_two_days_ahead_deletes_nothing_it_did_not_write(tmp_path, preset_dir):
    import httpx

    temp = tmp_path / "gradio-temp"
    foreign = [plant(temp / "my_notes.txt"), plant(temp / "sub" / "chapter1.tex"),
               plant(temp / hex64("x") / "looks_like_gradio.png")]
    refused = tmp_path / "data"
    notes = plant(refused / "notes.txt")
    base = {**os.environ, "STYLIZE_PRESETS_DIR": str(preset_dir), "STYLIZE_WEIGHTS": "embedded",
            "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(temp)}
    out = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env={**base, storage.ROOT_ENV: str(refused)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith(f"stylize: {storage.ROOT_ENV}={refused} refused")
    own, port = tmp_path / "own", free_port()
    env = {**base, storage.ROOT_ENV: str(own), "GRADIO_SERVER_PORT": str(port),
           "LD_PRELOAD": str(FAKETIME), "FAKETIME": "+2d"}
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        time.sleep(2)  # the first sweep runs at start-up
    finally:
        process.terminate()
        log = process.communicate(timeout=30)[0]
    assert all(p.read_text() == "mine" for p in foreign) and notes.read_text() == "mine"
    assert f"GRADIO_TEMP_DIR={temp} replaced by {own / 'gradio'}" in log and "Traceback" not in log
    assert (own / storage.MARKER).is_file() and (own / "gradio").is_dir()
