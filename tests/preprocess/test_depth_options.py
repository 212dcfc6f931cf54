"""Non-default depth options (README: `--depth-units-per-meter`, `--depth-baseline-m`,
`--depth-focal-px`) reach the 16-bit depth -> disparity conversion, each on its own, from the
`serve` flags and the environment. Values are hand-computed from the documented formula
disparity = baseline x focal / (raw / units), over 75 px."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imagebind_vectorizer.cli import build_parser
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import preprocess
from imagebind_vectorizer.settings import Settings
from tests import media

#: 4000 raw units everywhere, 224 x 224 so that no resize or crop touches the values
FLAT_4000 = media.encode_image(Image.fromarray(np.full((224, 224), 4000, dtype=np.uint16)), "PNG")
DEFAULT_FOCAL = 518.857901


def disparity_from(argv: list[str], env: dict[str, str] | None = None) -> float:
    settings = Settings.load(build_parser().parse_args(["serve", *argv]), env=env or {})
    out = preprocess(InputKind.DEPTH, FLAT_4000, settings.preprocess_options())[0, 0]
    assert float(out.min()) == pytest.approx(float(out.max()), abs=1e-7)  # flat in, flat out
    return float(out[100, 100])


@pytest.mark.parametrize(("argv", "expected"), [
    ([], 0.075 * DEFAULT_FOCAL / 4.0 / 75),  # millimetres: 4 m
    (["--depth-units-per-meter", "2000"], 0.075 * DEFAULT_FOCAL / 2.0 / 75),  # half-millimetres: 2 m
    (["--depth-baseline-m", "0.1"], 0.1 * DEFAULT_FOCAL / 4.0 / 75),
    (["--depth-focal-px", "300"], 0.075 * 300 / 4.0 / 75),
    (["--depth-units-per-meter", "2000", "--depth-baseline-m", "0.1", "--depth-focal-px", "300"], 0.1 * 300 / 2.0 / 75),
], ids=["defaults", "units", "baseline", "focal", "all-three"])
def test_each_depth_option_changes_the_disparity_as_the_formula_says(argv: list[str], expected: float) -> None:
    assert disparity_from(argv) == pytest.approx(expected, rel=1e-6)


def test_depth_options_from_the_environment() -> None:
    env = {"IMAGEBIND_DEPTH_UNITS_PER_METER": "2000", "IMAGEBIND_DEPTH_BASELINE_M": "0.1",
           "IMAGEBIND_DEPTH_FOCAL_PX": "300"}
    assert disparity_from([], env) == pytest.approx(0.1 * 300 / 2.0 / 75, rel=1e-6)
