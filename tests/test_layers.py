"""The house's rules, read from the imports (tools/layers.py): each floor of stylize/ imports only the floors below
it, nothing in stylize imports gradio or the UI, no circle, no folder over a dozen modules, and the README's picture
is the one the imports draw."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import layers  # noqa: E402


def test_each_floor_imports_only_floors_below_it():
    up = [(a, b) for a, targets in layers.graph().items() for b in targets
          if layers.FLOORS.index(layers.floor_of(b)) > layers.FLOORS.index(layers.floor_of(a))
          and (a, b) not in layers.ALLOWED_UP]
    assert up == []


def test_the_engine_knows_nothing_above_it():
    engine = {a: targets for a, targets in layers.graph().items() if layers.floor_of(a) == "engine"}
    assert engine, "the engine's modules were not found"
    reached = {layers.floor_of(b) for targets in engine.values() for b in targets}
    assert reached <= {"engine", "shared"}


def test_nothing_in_stylize_imports_gradio_or_the_ui():
    offenders = {str(p.relative_to(ROOT)): sorted(layers.external(p) & {"gradio", "ui", "app"})
                 for p in (ROOT / "stylize").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_circle_of_imports():
    assert layers.cycles(layers.graph()) == []


def test_a_circle_is_found_when_there_is_one():
    """The search itself, on a made-up graph: a → b → c → a is found, a tree is not."""
    assert layers.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert layers.cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_folder_over_a_dozen_modules():
    for folder in [ROOT / "stylize", *(p for p in (ROOT / "stylize").iterdir() if p.is_dir() and p.name != "__pycache__")]:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= 13, (folder, len(modules))


def test_every_subpackage_says_what_it_owns_and_may_import():
    for init in (ROOT / "stylize").glob("*/__init__.py"):
        doc = init.read_text()
        assert "May import:" in doc, init


def test_the_readme_draws_the_floors_the_imports_draw():
    assert layers.readme_graph() == layers.mermaid(layers.graph())
