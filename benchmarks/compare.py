"""Compare presets one after another or as one batch? Measures what /compare would do, on this device:

    python benchmarks/compare.py                       # 3 presets, 128 and 256 px, 30 steps, 2 repeats
    python benchmarks/compare.py --sizes 256 --steps 30 --repeats 3

Each preset runs with its tuned settings over this device's defaults (as /compare does), at the given size and
steps. Each repeat runs the same work both ways, interleaved (sequential, batched), after one warm-up of each (kernel
selection and the style-target cache are then equally warm for both). The report predicate is the app's
(`Reporter`: an image at most every 0.5 s), so the images a batch renders are counted as they would be. Prints
the load average before and after, every timing (wall clock, and the process's CPU time: the work done, which a
busy machine disturbs less), and the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stylize import Stylizer, load_image, load_weights  # noqa: E402
from stylize.engine.loop import Job  # noqa: E402
from stylize.engine.updates import Reporter  # noqa: E402
from stylize.params import defaults_for  # noqa: E402
from stylize.presets import PHOTOS_DIR, PresetImages, load_manifest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="starry_night,the_scream,shipwreck")
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--photo", default=str(PHOTOS_DIR / "tubingen.jpg"))
    parser.add_argument("--weights", default="embedded")
    args = parser.parse_args(argv)

    presets = load_manifest()
    finder = PresetImages(presets)
    ids = args.presets.split(",")
    styles = [load_image(finder.path(i), 2048) for i in ids]
    photo = load_image(args.photo, 2048)
    engine = Stylizer(load_weights(args.weights))
    base = defaults_for(engine.device.type)  # what /compare starts from: this device's defaults (e.g. its levels)
    print(f"{engine} · torch threads {__import__('torch').get_num_threads()} · load before {os.getloadavg()}")

    def sequential(size: int) -> tuple[float, float]:
        started, cpu = time.perf_counter(), time.process_time()
        for preset_id, style in zip(ids, styles):
            settings = presets[preset_id].apply(base.replace(size=size, steps=args.steps))
            for _ in engine.run(photo, [style], settings, report_every=Reporter()):
                pass
        return time.perf_counter() - started, time.process_time() - cpu

    def batched(size: int) -> tuple[float, float]:
        started, cpu = time.perf_counter(), time.process_time()
        jobs = [Job(photo, [style], presets[preset_id].apply(base.replace(size=size, steps=args.steps)))
                for preset_id, style in zip(ids, styles)]
        for _ in engine.run_batch(jobs, report_every=Reporter()):
            pass
        return time.perf_counter() - started, time.process_time() - cpu

    for size in map(int, args.sizes.split(",")):
        sequential(size), batched(size)  # warm-up
        times = {"sequential": [], "batched": []}
        for _ in range(args.repeats):
            times["sequential"].append(sequential(size))
            times["batched"].append(batched(size))
        for k, what in ((0, "wall"), (1, "CPU")):  # CPU time: the work done, less sensitive to a busy machine
            seq = statistics.median(t[k] for t in times["sequential"])
            bat = statistics.median(t[k] for t in times["batched"])
            print(f"{size} px, {len(ids)} presets × {args.steps} steps, {what} time: sequential "
                  f"{', '.join(f'{t[k]:.2f}' for t in times['sequential'])} s (median {seq:.2f}); batched "
                  f"{', '.join(f'{t[k]:.2f}' for t in times['batched'])} s (median {bat:.2f}); batched/sequential "
                  f"{bat / seq:.2f}")
    print(f"load after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
