"""The one Studio of this process, loaded when the app is imported (ZeroGPU needs the weights loaded on the
importing thread, before any worker process is forked)."""

from __future__ import annotations

from stylize import StylizeError
from stylize.service.studio import Studio

try:
    studio = Studio()
except StylizeError as exc:  # a bad setting in the environment ($STYLIZE_PRECISION): one line, no traceback
    raise SystemExit(f"stylize: {exc}") from None

# The start-up defaults, in one place: the API's signatures and the page's controls are made from them (a page
# load then fills in `studio.current_defaults()`, which follows the runs made here).
DEFAULTS, COMPARE_DEFAULTS, GRID_DEFAULTS = studio.defaults, studio.compare_defaults, studio.grid_defaults
LIMITS = studio.limits
