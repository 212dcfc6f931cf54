"""Smaller hostile cases from issue 8: float images full of NaN, IMU tables that are large or
malformed, .npy headers claiming terabytes, and error messages that passed library internals
through (numpy's "Unable to allocate 43.7 TiB ...", FFmpeg's errno and file name)."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import Limits, PreprocessOptions, Profile, preprocess
from imagebind_vectorizer.preprocess import imu as imu_module
from tests import media

pytestmark = pytest.mark.timeout(60)


def refused(kind: InputKind, data: bytes, options: PreprocessOptions | None = None) -> InputError:
    with pytest.raises(InputError) as info:
        preprocess(kind, data, options or PreprocessOptions())
    return info.value


def float_tiff(values: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(values.astype(np.float32), mode="F").save(out, format="TIFF")
    return out.getvalue()


# Float images ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [InputKind.DEPTH, InputKind.THERMAL, InputKind.IMAGE], ids=str)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_a_float_image_with_non_finite_pixels_is_refused(kind: InputKind, bad: float) -> None:
    everywhere = np.full((64, 80), bad)
    error = refused(kind, float_tiff(everywhere))
    assert error.reason == "invalid" and "NaN or infinite" in error.message
    one_pixel = np.linspace(0, 1, 300 * 280).reshape(300, 280)
    one_pixel[299, 5] = bad  # in the last band of rows
    assert refused(kind, float_tiff(one_pixel)).reason == "invalid"


@pytest.mark.parametrize("kind", [InputKind.DEPTH, InputKind.THERMAL], ids=str)
def test_a_finite_float_image_is_still_accepted(kind: InputKind) -> None:
    assert preprocess(kind, float_tiff(np.linspace(0, 200, 64 * 80).reshape(64, 80)),
                      PreprocessOptions()).shape == (1, 1, 224, 224)


# IMU ------------------------------------------------------------------------------------------------
def test_a_large_imu_csv_is_parsed_in_one_pass_as_python_would(monkeypatch: pytest.MonkeyPatch) -> None:
    """10^6 values cost 6 s of CPU when every cell went through Python's float(); a table is now
    read by numpy's C parser in one call (bench/decoders.py times it), to the same float32 values."""
    rng = np.random.default_rng(3)
    table = rng.standard_normal((20_000, 6)) * 10.0 ** rng.integers(-3, 4, (20_000, 6))
    lines = ["gyro_x,gyro_y,gyro_z,accl_x,accl_y,accl_z"] + [",".join(repr(v) for v in row) for row in table.tolist()]
    data = "\n".join(lines).encode()
    calls = []
    real = np.loadtxt

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(imu_module.np, "loadtxt", counting)
    out = preprocess(InputKind.IMU, data, PreprocessOptions())
    assert calls == [1]
    expected = np.array([[float(v) for v in line.split(",")] for line in lines[1:2001]], dtype=np.float32).T
    np.testing.assert_array_equal(out[0].numpy(), expected)


def test_an_imu_csv_with_far_more_lines_than_samples_is_refused_before_it_is_split() -> None:
    data = b"gyro_x,gyro_y,gyro_z,accl_x,accl_y,accl_z\n" + b"\n" * 1_000_000
    error = refused(InputKind.IMU, data, PreprocessOptions(limits=Limits(max_imu_samples=1000)))
    assert error.reason == "too_large" and "lines" in error.message


def test_an_imu_csv_header_with_thousands_of_columns_is_refused() -> None:
    header = ",".join(f"extra{i}" for i in range(5000))
    error = refused(InputKind.IMU, (header + "\n" + ",".join(["1"] * 5000)).encode())
    assert error.reason == "shape" and "5000 columns" in error.message


@pytest.mark.parametrize("profile", [Profile.OFFICIAL, Profile.WEAVIATE_LEGACY], ids=str)
def test_imu_csv_errors_name_the_line(profile: Profile) -> None:
    rows = ["gyro_x,gyro_y,gyro_z,accl_x,accl_y,accl_z"] + ["1,2,3,4,5,6"] * 50
    bad = list(rows)
    bad[37] = "1,2,3,x,5,6"
    error = refused(InputKind.IMU, "\n".join(bad).encode(), PreprocessOptions(profile=profile))
    assert error.reason == "decode" and "line 38" in error.message and "'1,2,3,x,5,6'" in error.message
    ragged = list(rows)
    ragged[20] = "1,2,3"
    error = refused(InputKind.IMU, "\n".join(ragged).encode(), PreprocessOptions(profile=profile))
    assert error.reason == "shape" and "line 21 has 3" in error.message


def npy_claiming(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """A .npy header announcing `shape` with a few bytes of data after it."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 64


@pytest.mark.parametrize("shape", [(6, 2_000_000_000_000), (6, 100), (2_000_000_000_000, 6)])
def test_a_npy_header_claiming_terabytes_is_refused_from_the_header(shape: tuple[int, int]) -> None:
    error = refused(InputKind.IMU, npy_claiming(shape))
    assert error.reason in ("decode", "shape") and "allocate" not in error.message and "TiB" not in error.message


# Messages -------------------------------------------------------------------------------------------
def test_ffmpeg_errors_reach_users_without_errno_or_file_names() -> None:
    for kind in (InputKind.AUDIO, InputKind.VIDEO):
        error = refused(kind, b"\x00\x01 not a media file at all " * 40)
        assert error.reason == "decode"
        assert "Errno" not in error.message and "<none>" not in error.message and "0x" not in error.message, error


def test_unexpected_decoder_failures_do_not_pass_their_text_through(monkeypatch: pytest.MonkeyPatch) -> None:
    from imagebind_vectorizer.preprocess import dispatch

    def broken(data: bytes, options: PreprocessOptions) -> None:
        raise MemoryError("Unable to allocate 43.7 TiB for an array with shape (6, 1000000000000)")

    monkeypatch.setitem(dispatch.PREPROCESSORS, InputKind.IMAGE, broken)
    error = refused(InputKind.IMAGE, media.image_bytes("PNG", 32, 32))
    assert error.reason == "too_large" and "TiB" not in error.message and "shape" not in error.message

    def failing(data: bytes, options: PreprocessOptions) -> None:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: ...")

    monkeypatch.setitem(dispatch.PREPROCESSORS, InputKind.IMAGE, failing)
    error = refused(InputKind.IMAGE, media.image_bytes("PNG", 32, 32))
    assert error.reason == "decode" and "enforce" not in error.message and "RuntimeError" in error.message
