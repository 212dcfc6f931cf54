"""Images in many formats and modes against the official `load_and_transform_vision_data`."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageOps

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import PreprocessOptions, Profile, preprocess
from tests import media
from tests.helpers import assert_tensors_match, assert_vectors_match, reference_embed, write

VARIANTS = media.image_variants()
OFFICIAL = PreprocessOptions()
EXIF = PreprocessOptions(exif_transpose=True)
#: vectors vs the reference model on the reference tensor: largest element difference per vector
#: norm, and norm ratio. Measured at most 6.6e-7 (our Conv2d with the kernel summed over time against
#: the reference Conv3d of the repeated frame), so 1e-5 leaves a 15x margin; a kernel averaged
#: instead of summed moves the vector by 0.11.
VECTOR_RTOL = 1e-5


@pytest.mark.reference
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_image_tensor_and_vector_equal_the_reference(ref, ref_tiny_model, make_embedder, tmp_path: Path,
                                                     name: str) -> None:
    data = VARIANTS[name]
    reference = ref.data.load_and_transform_vision_data([str(write(tmp_path, name, data))], "cpu")
    for profile in Profile:  # images are the same in both profiles
        ours = preprocess(InputKind.IMAGE, data, PreprocessOptions(profile=profile))
        assert ours.shape == (1, 3, 224, 224)
        assert_tensors_match(ours, reference, label="tensor image", atol=1e-6, what=f"{name}/{profile}")
    vector = make_embedder(output_scaling="official").embed("image", [data])
    assert_vectors_match(vector, reference_embed(ref_tiny_model, "vision", reference), label="vectors image",
                         rtol=VECTOR_RTOL, what=name)


@pytest.mark.reference
def test_exif_transpose_rotates_only_the_exif_tagged_image(ref, tmp_path: Path) -> None:
    tagged = VARIANTS["jpeg-exif-rotated"]
    plain = preprocess(InputKind.IMAGE, tagged, OFFICIAL)
    rotated = preprocess(InputKind.IMAGE, tagged, EXIF)
    assert not torch.equal(plain, rotated), "exif_transpose=True must apply the orientation tag"
    # It equals the official loader on the same pixels turned upright and saved losslessly.
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(tagged)))
    assert upright.size == (200, 300)  # orientation 6: the stored 300x200 image is shown rotated
    reference = ref.data.load_and_transform_vision_data(
        [str(write(tmp_path, "upright.png", media.encode_image(upright, "PNG")))], "cpu")
    assert_tensors_match(rotated, reference, label="tensor image", atol=1e-6, what="exif upright")
    for name, data in VARIANTS.items():
        if name != "jpeg-exif-rotated":
            same = torch.equal(preprocess(InputKind.IMAGE, data, EXIF), preprocess(InputKind.IMAGE, data, OFFICIAL))
            assert same, name


def test_images_have_distinct_tensors() -> None:
    """Guards the parity test against a degenerate generator: the variants differ from each other."""
    tensors = {name: preprocess(InputKind.IMAGE, data, OFFICIAL) for name, data in VARIANTS.items()}
    assert tensors["png-portrait"].std() > 0.1
    assert not torch.equal(tensors["png"], tensors["png-small"])
    assert not torch.equal(tensors["png"], tensors["png-portrait"])
