"""Regenerate the finished examples the app shows before anyone presses a button:

    python tools/make_examples.py              # every pair: 512 px, 150 steps, 3 levels, seed 0, fp32
    python tools/make_examples.py --size 128 --steps 60 --count 3   # a quick draft

Each (example photo × preset painting) pair below is run by the engine with the painting's tuned settings and
the fixed settings pinned here (not the machine's defaults, which depend on its measured speed): 512 px,
150 steps in 3 coarse-to-fine levels, seed 0, fp32 convolutions, every other setting at `Settings`' default.
The results are written to presets/examples/<photo>-<preset>.jpg, and presets/examples/examples.json lists,
for each, the photo id, the preset id and every setting used, so a click in the app reproduces it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stylize import Settings, Stylizer, load_image, load_weights  # noqa: E402
from stylize.presets import PHOTOS_DIR, PresetImages, load_manifest, load_photos  # noqa: E402

OUT = ROOT / "presets" / "examples"
MAX_INPUT_SIDE = 2048
# The examples' own settings, pinned: the CPU default of round 2 (README, Performance), the same on any machine.
SIZE, STEPS, SCALES, SEED, PRECISION = 512, 150, 3, 0, "fp32"
# (example photo id, preset id): each photo once, paintings chosen to look different from one another.
PAIRS = [
    ("tubingen", "starry_night"),
    ("chelsea_cat", "great_wave"),
    ("grace_hopper", "the_scream"),
    ("nyc_storm_skyline", "composition_vii"),
    ("macaque", "woman_with_hat"),
    ("sagarmatha", "the_kiss"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=SIZE, help=f"longest side of each result (default {SIZE})")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"L-BFGS steps per result (default {STEPS})")
    parser.add_argument("--scales", type=int, default=SCALES, help=f"coarse-to-fine levels (default {SCALES})")
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED})")
    parser.add_argument("--precision", default=PRECISION, help=f"fp32 or bf16 (default {PRECISION})")
    parser.add_argument("--count", type=int, default=len(PAIRS), help="make only the first N pairs")
    parser.add_argument("--weights", default="auto", help="weights: auto, hub, embedded or a .safetensors path")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = parser.parse_args(argv)

    presets, photos = load_manifest(), load_photos(folder=PHOTOS_DIR)
    preset_images = PresetImages(presets, extra_dir="")  # the committed paintings, never an override folder
    engine = Stylizer(load_weights(args.weights), args.device, precision=args.precision)
    base = Settings(size=args.size, steps=args.steps, scales=args.scales, seed=args.seed)
    OUT.mkdir(parents=True, exist_ok=True)
    entries = []
    for photo_id, preset_id in PAIRS[: args.count]:
        photo = photos[photo_id]
        if photo.path is None:
            raise SystemExit(f"example photo {photo_id} has no file in {PHOTOS_DIR}")
        settings = presets[preset_id].apply(base)
        content = load_image(photo.path, MAX_INPUT_SIDE)
        style = load_image(preset_images.path(preset_id), MAX_INPUT_SIDE)
        started = time.perf_counter()
        frame = None
        for frame in engine.run(content, [style], settings, report_every=settings.steps):
            pass
        seconds = time.perf_counter() - started
        name = f"{photo_id}-{preset_id}.jpg"
        frame.image.save(OUT / name, "JPEG", quality=90)
        entries.append({"photo": photo_id, "preset": preset_id, "image": name, "settings": asdict(settings),
                        "seconds": round(seconds, 1), "device": str(engine.device), "precision": engine.precision,
                        "weights": engine.weights.source})
        print(f"{name}: {frame.image.size[0]}×{frame.image.size[1]}, {settings.steps} steps, {seconds:.1f} s")
    for stale in set(OUT.glob("*.jpg")) - {OUT / e["image"] for e in entries}:
        stale.unlink()
    manifest = {"command": "python tools/make_examples.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                "examples": entries}
    (OUT / "examples.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(entries)} examples and {OUT / 'examples.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
