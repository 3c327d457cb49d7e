"""The lattice bench (issue #20): how calm each preset leaves the photo's flat regions, beside its losses.

    python benchmarks/look.py                                   # every preset on tubingen, 256 px, avg vs max
    python benchmarks/look.py --poolings max --calms 0,30       # max pooling without and with the calm term
    python benchmarks/look.py --photos tubingen,sagarmatha --presets shipwreck,the_kiss --size 512
    python benchmarks/look.py --pairs examples --size 512 --poolings avg --calms 0   # round 2's six examples
    python benchmarks/look.py --measure presets/examples         # finished results (examples.json), no run

For each (photo, preset, pooling, calm) it runs the preset's tuned settings (seed 0, fp32, one thread unless
--threads; calm 'preset': the preset's own), then prints `benchmarks.lattice.measure` of the 8-bit result —
`lattice` (periodic fine energy where the photo is flat), `highpass` (all fine energy there) and `texture` (all
fine energy where it is not) — and the result's style and content losses under fixed judges: `Stylizer.evaluate`
with pooling avg and with pooling max for every result, whatever pooling made it (losses under different
poolings are on different scales, so results are only compared under one judge), and the style loss of relu1_1
alone, which no pooling reaches (the same judge whichever pooling made the result).
`--json FILE` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

JUDGES = ("avg", "max")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default="tubingen", help="example photo ids, comma-separated")
    parser.add_argument("--presets", default="all", help="preset ids, comma-separated, or 'all'")
    parser.add_argument("--pairs", default=None,
                        help="photo:preset pairs, comma-separated, or 'examples' (make_examples' pairs); "
                             "replaces --photos × --presets")
    parser.add_argument("--poolings", default="avg,max", help="poolings to run, comma-separated ('preset': its own)")
    parser.add_argument("--calms", default="preset", help="calm weights to run, comma-separated ('preset': its own)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--scales", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--measure", default=None, help="measure the results listed in DIR/examples.json instead")
    parser.add_argument("--save", default=None, help="folder to save each result as PNG")
    parser.add_argument("--json", default=None, help="write the rows to this file")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import torch
    from PIL import Image

    from benchmarks import lattice as look
    from stylize import Settings, Stylizer, load_image
    from stylize.engine.weights import load_embedded
    from stylize.presets import PHOTOS_DIR, PresetImages, load_manifest

    torch.set_num_threads(args.threads)
    presets = load_manifest()
    paintings = PresetImages(presets, extra_dir="")
    engine = Stylizer(load_embedded(), "cpu", precision="fp32")
    rows = []

    def report(photo_id: str, preset_id: str, made_with: str, image: Image.Image, photo: Image.Image,
               style: Image.Image, settings: Settings, seconds: float) -> None:
        found = look.measure(image, photo)
        row = {"photo": photo_id, "preset": preset_id, "pooling": made_with, "size": list(image.size),
               "lattice": round(found.lattice, 2), "highpass": round(found.highpass, 2),
               "texture": round(found.texture, 1), "flat": round(found.flat, 3),
               "seconds": round(seconds, 1)}
        for judge in JUDGES:
            losses = engine.evaluate(image, photo, [style], settings.replace(pooling=judge))
            row[f"style_{judge}"], row[f"content_{judge}"] = round(losses["style"], 5), round(losses["content"], 5)
        fine = engine.evaluate(image, photo, [style], settings.replace(style_layers="relu1_1", layer_weights=""))
        row["style_relu1_1"] = round(fine["style"], 5)
        rows.append(row)
        judged = "  ".join(f"{j}: style {row[f'style_{j}']:.4f} content {row[f'content_{j}']:.4f}" for j in JUDGES)
        print(f"{photo_id:>18} × {preset_id:<22} {made_with:<4} lattice {row['lattice']:7.2f}  highpass "
              f"{row['highpass']:7.2f}  texture {row['texture']:6.1f}  |  judge {judged}  |  relu1_1 style {row['style_relu1_1']:.4f}  "
              f"({seconds:.0f} s)", flush=True)

    if args.measure:
        folder = Path(args.measure)
        manifest = json.loads((folder / "examples.json").read_text())
        for entry in manifest["examples"]:
            image = Image.open(folder / entry["image"]).convert("RGB")
            settings = Settings(**{"calm": 0.0, **entry["settings"]})  # results from before calm had none
            photo = load_image(PHOTOS_DIR / f"{entry['photo']}.jpg", 2048)
            style = load_image(paintings.path(entry["preset"]), 2048)
            report(entry["photo"], entry["preset"], f"{settings.pooling} calm {settings.calm:g}", image, photo, style,
                   settings, 0.0)
    else:
        ids = list(presets) if args.presets == "all" else args.presets.split(",")
        if args.pairs == "examples":
            sys.path.insert(0, str(ROOT / "tools"))
            from make_examples import PAIRS as pairs
        elif args.pairs:
            pairs = [tuple(pair.split(":")) for pair in args.pairs.split(",")]
        else:
            pairs = [(photo_id, preset_id) for photo_id in args.photos.split(",") for preset_id in ids]
        for photo_id, preset_id in pairs:
            photo = load_image(PHOTOS_DIR / f"{photo_id}.jpg", 2048)
            style = load_image(paintings.path(preset_id), 2048)
            tuned = presets[preset_id].apply(Settings(size=args.size, steps=args.steps, scales=args.scales, seed=0))
            for pooling, calm in [(p, c) for p in args.poolings.split(",") for c in args.calms.split(",")]:
                settings = tuned if pooling == "preset" else tuned.replace(pooling=pooling)
                settings = settings if calm == "preset" else settings.replace(calm=float(calm))
                made_with = f"{settings.pooling} calm {settings.calm:g}"
                started = time.perf_counter()
                frame = None
                for frame in engine.run(photo, [style], settings, report_every=settings.steps):
                    pass
                seconds = time.perf_counter() - started
                if args.save:
                    Path(args.save).mkdir(parents=True, exist_ok=True)
                    frame.image.save(Path(args.save) / f"{photo_id}-{preset_id}-{settings.pooling}-calm{settings.calm:g}.png")
                report(photo_id, preset_id, made_with, frame.image, photo, style, settings, seconds)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
