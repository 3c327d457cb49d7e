"""stylize: neural style transfer after Gatys, Ecker & Bethge (2015). This package never imports gradio."""

from .engine import Frame, Stylizer
from .errors import StylizeError
from .images import load_image
from .params import Settings
from .weights import Weights, load_weights

__all__ = ["Frame", "Settings", "Stylizer", "StylizeError", "Weights", "load_image", "load_weights"]
