"""Time the app's default run as a user meets it: `python tests/bench_app.py [PHOTO] [PRESET]`.

Starts `python app.py` on 127.0.0.1 (embedded weights, the committed presets and photo), then streams two
default runs through gradio_client at low CPU priority (a user's browser is on another machine) and prints the
time to the first streamed image and to the end. Not collected by pytest: timings never gate CI.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    photo = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "presets" / "photos" / "tubingen.jpg")
    preset = sys.argv[2] if len(sys.argv) > 2 else "starry_night"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "STYLIZE_WEIGHTS": "embedded"}
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        os.nice(19)
        from gradio_client import Client, handle_file

        started = time.perf_counter()
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:
                if time.perf_counter() - started > 60:
                    raise
                time.sleep(0.5)
        print(f"page served after {time.perf_counter() - started:.1f} s")
        for label in ("first run after start", "second run"):
            started, first, images = time.perf_counter(), None, 0
            for out in client.submit(content=handle_file(photo), preset=preset, api_name="/stylize"):
                if isinstance(out[0], str):
                    images += 1
                    first = first or time.perf_counter() - started
            print(f"{label}: first image {first:.2f} s, total {time.perf_counter() - started:.1f} s, "
                  f"{images} streamed images; {out[1]}")
        client.close()
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
