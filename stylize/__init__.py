"""stylize: neural style transfer after Gatys, Ecker & Bethge (2015). This package never imports gradio.

Floors, bottom up (each may import only the floors below it; tests/test_layers.py checks):

- the shared modules here: `errors`, `images` (loading, resizing, colour), `params` (one validated settings
  object), `presets` (what ships in presets/);
- `engine/`: the method itself (VGG-19, losses, targets, objective, schedule, L-BFGS, the loop);
- `cost/`: what work costs on this machine (time model, budgets, GPU plans);
- `experiments/`: Compare and Explore;
- `service/`: what the web app runs (studio, request checks, inputs, links, files, Stop, the compute thread).

The command line (`__main__`) stands on all of them; the UI (`app.py`, `ui/`) on top, outside the package.
"""

from .engine.loop import Frame, Stylizer
from .engine.weights import Weights, load_weights
from .errors import StylizeError
from .images import load_image
from .params import Settings

__all__ = ["Frame", "Settings", "Stylizer", "StylizeError", "Weights", "load_image", "load_weights"]
