"""Rebuild the shipped examples with the project's own generator.

The photograph is scikit-image's bundled `astronaut` (Eileen Collins, NASA: public domain), so it may
ship with the project. Run from the repository root: python examples/make_examples.py
"""
import tempfile
from pathlib import Path

from skimage import data

from inpdiff.data.io import write_png
from inpdiff.data.synth import SynthConfig, synthesize

out = Path(__file__).parent
with tempfile.TemporaryDirectory() as tmp:
    write_png(Path(tmp) / "astronaut.png", data.astronaut())
    synthesize(tmp, out, SynthConfig(per_image=1, all_methods=True, seed=2026, workers=1), progress=False)
