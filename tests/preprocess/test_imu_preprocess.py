"""IMU recordings. Official profile: channels by header name, transposed to (6, N); legacy profile:
the container's `loadtxt(skiprows=1)` + reshape (N, 6) -> (6, N), which interleaves sensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import PreprocessOptions, Profile, preprocess
from tests import media
from tests.helpers import assert_tensors_match, assert_vectors_match, container_imu_oracle, reference_embed

OFFICIAL = PreprocessOptions()
LEGACY = PreprocessOptions(profile=Profile.WEAVIATE_LEGACY)
SHUFFLE = [3, 0, 5, 1, 4, 2]
#: vectors vs the reference model on the oracle tensor (element difference per vector norm, and norm
#: ratio). Measured 0 (the same tensors, the same ops); 1e-5 as for every model comparison.
VECTOR_RTOL = 1e-5


def expected_tensor(samples: np.ndarray) -> torch.Tensor:
    """(6, N) in canonical order -> (6, 2000): the first 2000 samples, zero-padded at the end."""
    out = torch.zeros(6, 2000)
    n = min(samples.shape[1], 2000)
    out[:, :n] = torch.from_numpy(samples[:, :n])
    return out


def encodings(samples: np.ndarray) -> dict[str, bytes]:
    return {
        "csv-canonical": media.imu_csv(samples),
        "csv-shuffled-columns": media.imu_csv(samples[SHUFFLE], header=[media.IMU_HEADER[i] for i in SHUFFLE]),
        "csv-timestamp-column": media.imu_csv(samples, extra_columns=True),
        "csv-no-header": media.imu_csv(samples, header=None),
        "csv-other-spellings": media.imu_csv(samples, header=["Gyro X", "gyr_y", "gyroscope-z", "acc_x",
                                                              "Accel_Y", "accelerometer_z"]),
        "npy": media.imu_npy(samples),
        "npy-float64": media.imu_npy(samples.astype(np.float64)),
    }


@pytest.mark.parametrize("n", [2000, 2600, 1234, 9])
def test_official_encodings_give_the_same_transposed_tensor(n: int) -> None:
    samples = media.imu_samples(n, seed=n)
    expected = expected_tensor(samples)
    for name, data in encodings(samples).items():
        ours = preprocess(InputKind.IMU, data, OFFICIAL)
        assert ours.shape == (1, 6, 2000) and ours.dtype == torch.float32
        assert_tensors_match(ours[0], expected, label="tensor imu official", what=f"{name} n={n}")
    if n < 2000:
        assert (expected[:, n:] == 0).all()


@pytest.mark.reference
def test_official_vectors_equal_the_reference_model(ref_tiny_model, make_embedder) -> None:
    samples = media.imu_samples(2400, seed=3)
    vector = make_embedder(output_scaling="official").embed("imu", [media.imu_csv(samples)])
    assert_vectors_match(vector, reference_embed(ref_tiny_model, "imu", expected_tensor(samples)[None]),
                         label="vectors imu", rtol=VECTOR_RTOL)


def test_a_custom_channel_order_is_honoured() -> None:
    samples = media.imu_samples(500, seed=1)
    order = ("accl_x", "accl_y", "accl_z", "gyro_x", "gyro_y", "gyro_z")
    ours = preprocess(InputKind.IMU, media.imu_csv(samples), PreprocessOptions(imu_channels=order))
    assert torch.equal(ours[0], expected_tensor(samples[[3, 4, 5, 0, 1, 2]]))


@pytest.mark.reference
@pytest.mark.parametrize("n", [2000, 2600, 1234])
def test_legacy_equals_the_containers_reshape(ref_tiny_model, make_embedder, n: int) -> None:
    samples = media.imu_samples(n, seed=n + 1)
    data = media.imu_csv(samples)
    expected = container_imu_oracle(data)
    ours = preprocess(InputKind.IMU, data, LEGACY)
    assert_tensors_match(ours[0], expected, label="tensor imu legacy", what=f"n={n}")
    assert not torch.allclose(ours[0], expected_tensor(samples)), "the reshape is not a transpose"
    vector = make_embedder(output_scaling="official", preprocessing="weaviate-legacy").embed("imu", [data])
    assert_vectors_match(vector, reference_embed(ref_tiny_model, "imu", expected[None]), label="vectors imu legacy",
                         rtol=VECTOR_RTOL)


def test_legacy_skips_the_first_line_whatever_it_holds() -> None:
    samples = media.imu_samples(300, seed=4)
    without_header = media.imu_csv(samples, header=None)
    ours = preprocess(InputKind.IMU, without_header, LEGACY)
    skipped = media.imu_csv(samples[:, 1:])  # what the container sees: row 0 taken as the header
    assert torch.equal(ours, preprocess(InputKind.IMU, skipped, LEGACY))
