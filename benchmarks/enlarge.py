"""Print size (#33): a finished result enlarged, measured. One measurement per process, so peak RSS is its own.

    python -m benchmarks.enlarge source PHOTO PAINTING -o small.png [--size 512]      # the result to enlarge
    python -m benchmarks.enlarge enlarge PHOTO PAINTING small.png --to 2048 -o big.png [--crop docs/x.png]

Prints: the CPU (lscpu's model name) and precision, time, peak RSS (the process's ru_maxrss), the seam measure along
every tile border of the last level (benchmarks/lattice.seam_ratio: 1 = no seam) and, as a control, on the
columns and rows of the same 16 px grid that were never borders, the calm measure (lattice.measure), and
the style loss of the result scored at the small result's size (the engine's own `evaluate` with the same settings:
the picture seen whole) against the small result's.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

from PIL import Image

from benchmarks import lattice
from stylize import images
from stylize.engine.enlarge import ENLARGE_STEPS, prepare_enlargement
from stylize.engine.loop import Job, Stylizer, alone
from stylize.engine.precision import cpu_name
from stylize.engine.weights import load_weights
from stylize.params import Settings, defaults_for


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def scored(engine: Stylizer, image: Image.Image, photo: Image.Image, painting: Image.Image, settings: Settings,
           size: tuple[int, int]) -> float:
    """The style loss of `image` seen at `size` (resized as everything is: images.resize)."""
    return engine.evaluate(images.resize(image, size), photo, [painting], settings)["style"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.enlarge")
    parser.add_argument("what", choices=("source", "enlarge"))
    parser.add_argument("photo")
    parser.add_argument("painting")
    parser.add_argument("small", nargs="?", help="the result to enlarge (enlarge)")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--size", type=int, default=512, help="the small result's size (source)")
    parser.add_argument("--to", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=ENLARGE_STEPS, help="steps per level (enlarge)")
    parser.add_argument("--crop", default=None, help="save a 100 %% crop beside the small result upsampled")
    args = parser.parse_args(argv)
    photo, painting = images.load_image(args.photo), images.load_image(args.painting)
    settings = defaults_for("cpu").replace(size=args.size, seed=0)
    engine = Stylizer(load_weights())
    print(f"CPU: {cpu_name()}; {engine.precision}; weights {engine.weights.source}", file=sys.stderr)
    started = time.perf_counter()
    if args.what == "source":
        frame = list(engine.run(photo, [painting], settings, report_every=10**9))[-1]
        frame.image.save(args.output)
        result, small = frame.image, frame.image
        borders = None
    else:
        small = Image.open(args.small).convert("RGB")
        run = prepare_enlargement(engine, small, Job(photo, [painting], settings), args.to, steps=args.steps,
                                  report_every=10**9)
        frame = list(alone(run))[-1]
        result = frame.image
        result.save(args.output)
        last = [b for b in run.borders if b[0] == len(run.plan.sizes) - 1]
        borders = (None, sorted({x for b in last for x in b[1]}), sorted({y for b in last for y in b[2]})) \
            if last else None
    seconds = time.perf_counter() - started
    look = lattice.measure(result, photo)
    look_small = lattice.measure(images.resize(result, small.size), photo)
    seam = lattice.seam_ratio(result, borders[1], borders[2]) if borders else float("nan")
    # The control: the same measure on every 16th column and row that was never a border at the last level.
    control = lattice.seam_ratio(result, [c for c in range(16, result.width, 16) if borders and c not in borders[1]],
                                 [r for r in range(16, result.height, 16) if borders and r not in borders[2]])
    style = scored(engine, result, photo, painting, settings, small.size)
    style_small = scored(engine, small, photo, painting, settings, small.size)
    print(f"{args.what} {result.width}×{result.height}: {seconds:.0f} s, peak RSS {peak_rss_gb():.2f} GB, "
          f"seam {seam:.3f} at the last level's borders, {control:.3f} elsewhere on the 16 px grid "
          f"({'tiled' if borders else 'whole passes'}), calm here: {look}; seen at "
          f"{small.width}×{small.height}: {look_small}; "
          f"style at {small.width}×{small.height}: {style:.4g} (small result {style_small:.4g}, "
          f"×{style / style_small:.2f})")
    if args.crop:
        w, h = 512, 384
        x0, y0 = (result.width - w) // 2, (result.height - h) // 3
        up = small.resize(result.size, Image.BICUBIC).crop((x0, y0, x0 + w, y0 + h))
        sheet = Image.new("RGB", (2 * w + 8, h), "white")
        sheet.paste(up, (0, 0))
        sheet.paste(result.crop((x0, y0, x0 + w, y0 + h)), (w + 8, 0))
        sheet.save(args.crop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
