"""The command line: ``python -m stylize PHOTO PAINTING [PAINTING ...] -o OUT.png``, and
``python -m stylize explore KIND ... -o GRID.png`` for the paper's experiments as labelled grids."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import fields
from pathlib import Path

from stylize.engine.precision import PRECISION_ENV, PRECISIONS, requested_precision

from .errors import StylizeError
from .params import ABOUT, CHOICES, Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stylize",
        description="Paint a photo in the style of one or more paintings (Gatys, Ecker & Bethge 2015).",
        epilog="The paper's experiments as grids: python -m stylize explore --help",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("photo", help="the photo; 'none' synthesizes the painting's texture from noise")
    parser.add_argument("paintings", nargs="*", help="one or more paintings; none reconstructs the photo from its features")
    parser.add_argument("-o", "--output", default="out.png", help="output PNG")
    defaults = Settings()
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        kwargs = {"default": default, "help": ABOUT[f.name].describe(), "type": type(default)}
        if f.name in CHOICES:
            kwargs["choices"] = CHOICES[f.name]
            kwargs["metavar"] = f.name.upper() if len(CHOICES[f.name]) > 8 else None
        parser.add_argument(flag, **kwargs)
    parser.add_argument("--masks", nargs="+", default=None, metavar="MASK",
                        help="one mask image per style (white: that style applies there; uncovered pixels keep the photo)")
    parser.add_argument("--from", dest="source", default=None, metavar="RESULT",
                        help="enlarge this finished result (made from PHOTO and PAINTING with these settings) to "
                             "--size, coarse to fine, instead of starting from the photo")
    parser.add_argument("--coarse", type=int, default=None, metavar="PX",
                        help="make the picture at PX first, then enlarge it coarse to fine to --size (the default "
                             "above 1024 px: 512, where the network sees the painting's strokes)")
    parser.add_argument("--enlarge-steps", type=int, default=None,
                        help="steps per level when enlarging (default: the engine's, 6)")
    parser.add_argument("--save-every", type=int, default=0, help="also save OUT-<step>.png every N steps (0: never)")
    return with_machine_flags(parser)


def with_machine_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags both commands share: which weights, device and precision, and the progress bar."""
    parser.add_argument("--weights", default=None,
                        help="hub, embedded, or a .safetensors path (default: $STYLIZE_WEIGHTS, else the Hub, else embedded)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--precision", default=None, choices=PRECISIONS,
                        help="the convolutions' precision; auto: the faster here, measured (default: "
                             f"${PRECISION_ENV}, else auto)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def build_explore_parser() -> argparse.ArgumentParser:
    from stylize.experiments.explore import DEFAULT_CONTENT_LAYERS, DEFAULT_STRENGTHS, KINDS, MAX_CELLS

    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m stylize explore",
        description="The paper's experiments as one labelled grid image, all cells optimized together as one batch. "
                    "style: rows = style layer sets, columns = style strengths (Fig. 3; a photo and a painting); "
                    "texture: rows = style layer sets, columns = seeds, from noise (Fig. 1; a painting); "
                    "reconstruction: rows = content layers, columns = seeds, from noise (Fig. 1; a photo).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("kind", choices=KINDS, help="the experiment")
    parser.add_argument("--photo", default=None, help="the photo (style and reconstruction grids)")
    parser.add_argument("--painting", default=None, help="the painting (style and texture grids)")
    parser.add_argument("--rows", nargs="+", default=None, metavar="ROW",
                        help="style and texture: layer sets a–e or comma-separated layer names (default: a b c d e); "
                             f"reconstruction: content layers (default: {' '.join(DEFAULT_CONTENT_LAYERS)})")
    parser.add_argument("--columns", nargs="+", default=None, metavar="COLUMN",
                        help="style: strengths β/α (default: "
                             f"{' '.join(f'{c:g}' for c in DEFAULT_STRENGTHS)}); texture and reconstruction: seeds "
                             f"(default: --seed). At most {MAX_CELLS} cells in all")
    parser.add_argument("-o", "--output", default="grid.png", help="output PNG: the labelled grid")
    parser.add_argument("--cells-dir", default=None, help="also save each cell as a PNG in this folder")
    parser.add_argument("--title", default=None, help="title drawn above the grid (default: the experiment's; '' none)")
    parser.add_argument("--size", type=int, default=128, help=ABOUT["size"].help + " (each cell)")
    parser.add_argument("--steps", type=int, default=100, help=ABOUT["steps"].help)
    parser.add_argument("--seed", type=int, default=defaults.seed, help=ABOUT["seed"].help)
    parser.add_argument("--content-layer", default=defaults.content_layer, help=ABOUT["content_layer"].help + " (style grid)")
    parser.add_argument("--init", default=defaults.init, choices=CHOICES["init"],
                        help="starting image of the style grid (texture and reconstruction start from noise)")
    parser.add_argument("--pooling", default=defaults.pooling, choices=CHOICES["pooling"], help=ABOUT["pooling"].help)
    parser.add_argument("--tv-weight", type=float, default=defaults.tv_weight, help=ABOUT["tv_weight"].help)
    return with_machine_flags(parser)


def engine_for(args: argparse.Namespace, layers: set[str]):
    """The engine (a Stylizer) the flags ask for, loaded only as deep as `layers` need; says which weights and
    precision. Imported here: `--help` stays fast without torch."""
    from stylize.engine.loop import Stylizer
    from stylize.engine.vgg import deepest
    from stylize.engine.weights import load_weights

    weights = load_weights(args.weights, upto=deepest(layers))
    print(f"weights: {weights.summary}", file=sys.stderr)
    stylizer = Stylizer(weights, args.device, precision=args.precision)
    print(f"precision: {stylizer.chosen.reason}", file=sys.stderr)
    return stylizer


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    explore = bool(argv) and argv[0] == "explore"
    args = build_explore_parser().parse_args(argv[1:]) if explore else build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        args.precision = requested_precision(args.precision)  # a bad $STYLIZE_PRECISION: before any work
        return _explore(args) if explore else _run(args)
    except StylizeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import images

    settings = Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})
    output = Path(args.output)
    if output.suffix.lower() != ".png":
        raise StylizeError(f"the output must be a .png file (got {output.name})")
    if not output.parent.is_dir():
        raise StylizeError(f"the output folder {output.parent} does not exist")
    content = None if args.photo.lower() == "none" else images.load_image(args.photo, max_side=4 * settings.size)
    styles = [images.load_image(path, max_side=4 * settings.size) for path in args.paintings]
    if args.masks and content is None:
        raise StylizeError("masks need a photo: they say where on it each style goes")
    if args.masks:
        from stylize.engine.masks import load_masks

        for notice in load_masks(args.masks, len(styles), images.fit_size(content.size, settings.size))[1]:
            print(f"note: {notice}", file=sys.stderr)
    stylizer = engine_for(args, settings.layers_in_use)
    started = time.perf_counter()
    frame = None
    last_report = [0.0]
    from stylize.engine.enlarge import COARSE_SIZE, DIRECT_MAX, ENLARGE_STEPS, enlarge

    source = images.load_image(args.source, max_side=settings.size) if args.source else None
    if source is None and (args.coarse or settings.size > DIRECT_MAX):  # print size: the picture first, then larger
        coarse = settings.replace(size=args.coarse or COARSE_SIZE)
        if coarse.size >= settings.size:
            raise StylizeError(f"--coarse {coarse.size} must be smaller than --size {settings.size}")
        print(f"note: {settings.size} px is made at {coarse.size} px first (where the network sees the painting's "
              "strokes), then enlarged coarse to fine", file=sys.stderr)
        with tqdm(total=coarse.steps, disable=args.quiet, unit="step", file=sys.stderr, desc=f"{coarse.size} px") as bar:
            for frame in stylizer.run(content, styles, coarse, report_every=10**9, masks=args.masks):
                bar.total = frame.total_steps
                bar.update(1)
        source = frame.image

    def report(step: int) -> bool:
        """Saved steps, and about once a second for the progress bar (losses are read back only then)."""
        due = time.perf_counter() - last_report[0] >= 1.0
        if due:
            last_report[0] = time.perf_counter()
        return due or bool(args.save_every and step % args.save_every == 0)

    if source is not None:
        from stylize.engine.loop import Job

        steps = args.enlarge_steps or ENLARGE_STEPS
        frames = enlarge(stylizer, source, Job(content, styles, settings.replace(size=max(source.size)), args.masks),
                         settings.size, steps=steps, report_every=report)
    else:
        frames = stylizer.run(content, styles, settings, report_every=report, masks=args.masks)
    with tqdm(total=settings.steps, disable=args.quiet, unit="step", file=sys.stderr) as bar:
        for frame in frames:
            bar.total = frame.total_steps
            bar.update(1)
            if frame.losses is not None:
                bar.set_postfix({k: f"{v:.3g}" for k, v in frame.losses.items()})
            if args.save_every and frame.step % args.save_every == 0 and not frame.done:
                frame.image.save(output.with_name(f"{output.stem}-{frame.step:04d}.png"))
    assert frame is not None and frame.image is not None
    images.save_png(frame.image, output)
    losses = ", ".join(f"{k} {v:.4g}" for k, v in frame.losses.items())
    undone = f"; {frame.resets[0]} steps undone by the guard" if frame.resets[0] else ""
    print(f"saved {output} ({frame.image.width}×{frame.image.height}) in {time.perf_counter() - started:.1f} s, "
          f"{frame.total_steps} steps on {stylizer.device}; losses of this image: {losses}{undone}; "
          f"weights: {stylizer.weights.source}")
    return 0


def _numbers(texts: list[str] | None) -> tuple[float, ...] | None:
    if texts is None:
        return None
    values = []
    for text in (part for t in texts for part in t.split(",") if part.strip()):
        try:
            values.append(float(text))
        except ValueError:
            raise StylizeError(f"--columns takes numbers (got {text!r})") from None
    return tuple(values)


def _explore(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from stylize.experiments.explore import Grid, run_grid

    from . import images

    settings = Settings(size=args.size, steps=args.steps, seed=args.seed, content_layer=args.content_layer,
                        init=args.init, pooling=args.pooling, tv_weight=args.tv_weight)
    grid = Grid(args.kind, tuple(args.rows) if args.rows else None, _numbers(args.columns), settings)
    output = Path(args.output)
    if output.suffix.lower() != ".png":
        raise StylizeError(f"the output must be a .png file (got {output.name})")
    if not output.parent.is_dir():
        raise StylizeError(f"the output folder {output.parent} does not exist")
    cells_dir = Path(args.cells_dir) if args.cells_dir else None
    if cells_dir is not None and not cells_dir.is_dir():
        raise StylizeError(f"the cells folder {cells_dir} does not exist")
    grid.check_images(args.photo or None, args.painting or None)  # a missing image is reported before any loading
    needs = {"style": ("photo", "painting"), "texture": ("painting",), "reconstruction": ("photo",)}[args.kind]
    for name in ("photo", "painting"):
        if getattr(args, name) and name not in needs:
            print(f"note: the {args.kind} grid uses no {name}; --{name} ignored", file=sys.stderr)
    content = images.load_image(args.photo, max_side=4 * args.size) if args.photo and "photo" in needs else None
    style = images.load_image(args.painting, max_side=4 * args.size) if args.painting and "painting" in needs else None
    stylizer = engine_for(args, grid.layers_in_use)
    started = time.perf_counter()
    frame = None
    with tqdm(total=settings.steps, disable=args.quiet, unit="step", file=sys.stderr) as bar:
        for frame in run_grid(stylizer, grid, content, style, report_every=10**9):
            bar.total = frame.total_steps
            bar.update(1)
    assert frame is not None and frame.images is not None
    title = grid.title if args.title is None else args.title
    grid.labelled(frame.images, title).save(output)
    if cells_dir is not None:
        for k, image in enumerate(frame.images):
            r, c = divmod(k, len(grid.columns))
            column = f"{grid.columns[c]:g}" if args.kind == "style" else f"seed{grid.columns[c]}"
            row = grid.rows[r].replace(",", "+").replace(" ", "")
            image.save(cells_dir / f"{args.kind}-r{r + 1}c{c + 1}-{row}-{column}.png")
    rows, columns = grid.shape
    print(f"saved {output} ({rows} × {columns} cells of {frame.size[0]}×{frame.size[1]}) in "
          f"{time.perf_counter() - started:.1f} s, {frame.total_steps} steps on {stylizer.device}; "
          f"weights: {stylizer.weights.source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
