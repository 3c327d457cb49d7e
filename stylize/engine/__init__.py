"""The engine: Gatys et al.'s method and nothing around it — VGG-19 and its weights, the losses (Gram, MRF patches,
masks, calm), the targets, the objective, the coarse-to-fine schedule, our L-BFGS, the loop that yields frames, the
precision chosen for this device, and the updates a run reports.

May import: the shared modules at the top of the package (`stylize.errors`, `stylize.images`, `stylize.params`),
torch and PIL. Never the cost model, the experiments, the service, the UI or gradio (tests/test_layers.py).

`Stylizer`, `Frame` and `Job` are importable from here; they load on first use, so that `stylize.params` can read
the network's layer names (`engine.vgg`) without loading the loop.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Frame", "Job", "Stylizer"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
