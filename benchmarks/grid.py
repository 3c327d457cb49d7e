"""``python -m benchmarks.grid``: Explore's style grid as one batch against its cells one after another.

Targets and calibration are computed by a one-step warm-up first, so both timings see the same cache. The
network carries each cell only as deep as its own layers go (rows a–d stop at the content layer relu4_2, row e
goes on to relu5_1), which is what lets the batch keep up with the cells run alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from stylize.engine.loop import Stylizer
from stylize.engine.weights import load_embedded
from stylize.experiments.explore import Grid, run_grid
from stylize.params import Settings

from .bench import reference_images


def bench_grid(stylizer: Stylizer, content: Image.Image, style: Image.Image, size: int = 128, steps: int = 100,
               grid: Grid | None = None, save_to: str | Path | None = None) -> dict[str, Any]:
    """Seconds for a style grid (default 5 × 4) as one batch (`run_grid`) and cell after cell (`Stylizer.run`).

    Returns batched_s, sequential_s, speedup (sequential / batched), cells, shape, size (the output's), steps;
    `save_to` also writes the batched run's labelled grid there.
    """
    grid = grid or Grid("style", settings=Settings(size=size, steps=steps))
    grid = Grid(grid.kind, grid.rows, grid.columns, grid.settings.replace(size=size, steps=steps))

    def sync() -> None:
        if stylizer.device.type == "cuda":
            torch.cuda.synchronize(stylizer.device)

    warm = Grid(grid.kind, grid.rows, grid.columns, grid.settings.replace(steps=1))
    for _ in run_grid(stylizer, warm, content, style, report_every=10**9):
        pass
    sync()
    started = time.perf_counter()
    for frame in run_grid(stylizer, grid, content, style, report_every=10**9):
        pass
    sync()
    batched = time.perf_counter() - started
    started = time.perf_counter()
    for job in grid.jobs(content, style):
        for _ in stylizer.run(job.content, job.styles, job.settings, report_every=10**9):
            pass
    sync()
    sequential = time.perf_counter() - started
    if save_to is not None:
        grid.labelled(frame.images).save(save_to)
    return {"batched_s": batched, "sequential_s": sequential, "speedup": sequential / batched, "cells": grid.cells,
            "shape": list(grid.shape), "size": list(frame.size), "steps": steps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.grid", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rows", default=None, help="style layer sets, ';'-separated (default a;b;c;d;e)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--save", default=None, help="write the batched run's labelled grid to this PNG")
    args = parser.parse_args(argv)
    content, style, source = reference_images()
    stylizer = Stylizer(load_embedded(), args.device)
    rows = tuple(args.rows.split(";")) if args.rows else None
    grid = Grid("style", rows, settings=Settings(size=args.size, steps=args.steps))
    result = bench_grid(stylizer, content, style, args.size, args.steps, grid, args.save)
    print(json.dumps({"device": str(stylizer.device), "precision": stylizer.precision, "images": source, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
