"""IMU recordings -> (1, 6, 2000): three accelerometer and three gyroscope channels.

Official profile: a CSV whose header names the channels (mapped by name, extra columns such as
timestamps ignored, so column order does not matter), a header-less CSV of exactly six columns in
the configured order, or a `.npy` array of shape (6, N). The N x 6 table is *transposed* to 6 x N.
Legacy profile: Weaviate's container reads the CSV after one header row and *reshapes* N x 6 to
6 x N, interleaving samples of different sensors; reproduced for compatibility.
Both crop or zero-pad the time axis to 2000 samples."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import torch

from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import IMU_CHANNELS, IMU_SAMPLES
from imagebind_vectorizer.preprocess.profiles import Limits, PreprocessOptions

NPY_MAGIC = b"\x93NUMPY"

# Accepted header spellings for each canonical channel name.
_AXIS = r"[_\- ]?(?P<axis>[xyz])$"
_SENSOR_PATTERNS = {
    "gyro": re.compile(r"^(gyro|gyroscope|gyr|g)" + _AXIS),
    "accl": re.compile(r"^(accl|acc|accel|accelerometer|acceleration|a)" + _AXIS),
}


def canonical_channel(header: str) -> str | None:
    name = header.strip().strip('"').lower()
    for sensor, pattern in _SENSOR_PATTERNS.items():
        match = pattern.match(name)
        if match:
            return f"{sensor}_{match.group('axis')}"
    return None


def fit_length(samples: torch.Tensor) -> torch.Tensor:
    """(6, N) -> (6, 2000): keep the first 2000 samples or zero-pad at the end."""
    n = samples.shape[1]
    if n >= IMU_SAMPLES:
        return samples[:, :IMU_SAMPLES].contiguous()
    return torch.nn.functional.pad(samples, (0, IMU_SAMPLES - n))


def _check_values(array: np.ndarray, limits: Limits) -> None:
    if array.ndim != 2 or array.shape[1] == 0:
        raise InputError(f"IMU data has shape {array.shape}; expected 6 channels x N samples", reason="shape")
    if array.shape[1] > limits.max_imu_samples:
        raise InputError(f"IMU data has {array.shape[1]} samples, over the limit of {limits.max_imu_samples}",
                         reason="too_large")
    if not np.isfinite(array).all():
        raise InputError("IMU data holds NaN or infinite values", reason="invalid")


def _decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError("IMU data is neither a .npy array nor UTF-8 CSV text", reason="decode") from exc


#: IMU tables have 6 to ~10 columns; a header of thousands would cost a regex match each
MAX_CSV_COLUMNS = 64


def _is_blank(line: str) -> bool:
    """A line csv would read as empty cells only (whitespace, commas, empty quotes)."""
    return not line.replace(",", "").replace('"', "").strip()


def _csv_lines(data: bytes, limits: Limits) -> list[str]:
    """The CSV's non-blank lines, refusing before any splitting a text with far more lines than
    samples allowed (counting newlines runs in C)."""
    text = _decode_text(data)
    most = 2 * limits.max_imu_samples + 1024
    if text.count("\n") > most:
        raise InputError(f"IMU CSV has over {most} lines, far more than the limit of {limits.max_imu_samples} "
                         "samples", reason="too_large")
    lines = [line for line in text.splitlines() if not _is_blank(line)]
    if not lines:
        raise InputError("IMU CSV is empty", reason="empty")
    return lines


def _cells(line: str) -> list[str]:
    return next(csv.reader([line]))


def _is_numeric(cells: list[str]) -> bool:
    try:
        [float(cell) for cell in cells]
    except ValueError:
        return False
    return True


def _header_and_rows(lines: list[str]) -> tuple[list[str] | None, list[str]]:
    first = _cells(lines[0])
    if len(first) > MAX_CSV_COLUMNS:
        raise InputError(f"IMU CSV has {len(first)} columns; at most {MAX_CSV_COLUMNS} are read", reason="shape")
    if _is_numeric(first):
        return None, lines
    return first, lines[1:]


def _parse_table(rows: list[str], first_line: int) -> np.ndarray:
    """Numeric CSV rows -> (rows, columns) float32, parsed by numpy's C reader in one pass. On
    failure the offending line is found for the message: column counts directly, a non-numeric
    cell by halving the rows (still linear)."""
    width = rows[0].count(",")
    for number, row in enumerate(rows, start=first_line):
        if row.count(",") != width:
            raise InputError(f"IMU CSV rows have different lengths: line {first_line} has {width + 1} values, "
                             f"line {number} has {row.count(',') + 1}", reason="shape")

    def parse(part: list[str]) -> np.ndarray:
        return np.loadtxt(part, delimiter=",", dtype=np.float32, ndmin=2, comments=None, quotechar='"')

    try:
        return parse(rows)
    except ValueError:
        low, high = 0, len(rows)  # the first bad row lies in [low, high)
        while high - low > 1:
            middle = (low + high) // 2
            try:
                parse(rows[low:middle])
                low = middle
            except ValueError:
                high = middle
        raise InputError(f"IMU CSV line {first_line + low} is not numeric: {rows[low][:80]!r}", reason="decode") \
            from None


def _check_sample_count(samples: int, limits: Limits) -> None:
    """Before parsing the cells: a sample is one data row (the header is not counted)."""
    if samples > limits.max_imu_samples:
        raise InputError(f"IMU CSV has {samples} samples, over the limit of {limits.max_imu_samples}",
                         reason="too_large")


def _npy(data: bytes, limits: Limits) -> np.ndarray:
    """A (6, N) .npy array of real numbers, its header checked before any data is allocated (a
    header may claim terabytes)."""
    stream = io.BytesIO(data)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        version = np.lib.format.read_magic(stream)
        shape, _, dtype = readers[version](stream)
    except Exception as exc:
        raise InputError("corrupt .npy IMU array: its header cannot be read (format versions 1.0 and 2.0 are)",
                         reason="decode") from exc
    # Real numbers only: complex values would lose their imaginary part in the float32 cast.
    if dtype.hasobject:
        raise InputError(".npy IMU array holds Python objects (a pickle); expected real numbers", reason="decode")
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise InputError(f".npy IMU array has dtype {dtype}; expected real numbers", reason="invalid")
    if len(shape) != 2 or shape[0] != IMU_CHANNELS:
        hint = " (transpose it)" if len(shape) == 2 and shape[1] == IMU_CHANNELS else ""
        raise InputError(f".npy IMU array has shape {shape}; expected (6, N){hint}", reason="shape")
    if len(data) - stream.tell() < shape[0] * shape[1] * dtype.itemsize:
        raise InputError(f"corrupt .npy IMU array: its header announces {shape} values the file does not hold",
                         reason="decode")
    if shape[1] > limits.max_imu_samples:
        raise InputError(f"IMU data has {shape[1]} samples, over the limit of {limits.max_imu_samples}",
                         reason="too_large")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise InputError("corrupt .npy IMU array", reason="decode") from exc


def _official(data: bytes, options: PreprocessOptions) -> np.ndarray:
    limits = options.limits
    if data.startswith(NPY_MAGIC):
        array = _npy(data, limits).astype(np.float32)
        _check_values(array, limits)
        return array
    header, rows = _header_and_rows(_csv_lines(data, limits))
    if not rows:
        raise InputError("IMU CSV has a header but no samples", reason="empty")
    _check_sample_count(len(rows), limits)
    table = _parse_table(rows, first_line=2 if header else 1)
    if header is None:
        if table.shape[1] != IMU_CHANNELS:
            raise InputError(f"IMU CSV without a header has {table.shape[1]} columns; expected 6 "
                             f"({', '.join(options.imu_channels)}) or a header naming them", reason="shape")
        array = table.T
    else:
        if table.shape[1] != len(header):
            raise InputError(f"IMU CSV rows have {table.shape[1]} values but the header names {len(header)} "
                             "columns", reason="shape")
        columns = {}
        for position, name in enumerate(header):
            channel = canonical_channel(name)
            if channel is not None and channel not in columns:
                columns[channel] = position
        missing = [c for c in options.imu_channels if c not in columns]
        if missing:
            raise InputError(f"IMU CSV header {header} lacks channel(s) {missing}; name the columns "
                             f"{', '.join(options.imu_channels)}", reason="shape")
        array = np.stack([table[:, columns[c]] for c in options.imu_channels])
    array = np.ascontiguousarray(array, dtype=np.float32)
    _check_values(array, limits)
    return array


def _legacy(data: bytes, options: PreprocessOptions) -> np.ndarray:
    # The container: np.loadtxt(delimiter=",", skiprows=1), then reshape (N, 6) -> (6, N).
    if data.startswith(NPY_MAGIC):
        raise InputError("the weaviate-legacy profile reads IMU data only as CSV, as Weaviate's container did; "
                         ".npy arrays need the official profile", reason="decode")
    header, rows = _header_and_rows(_csv_lines(data, options.limits))
    body = rows if header is not None else rows[1:]  # it skips the first line whatever it holds
    if not body:
        raise InputError("IMU CSV has no samples after its header row", reason="empty")
    _check_sample_count(len(body), options.limits)
    table = _parse_table(body, first_line=2)
    if table.shape[1] != IMU_CHANNELS:
        raise InputError(f"IMU CSV has {table.shape[1]} columns; the legacy profile needs exactly 6",
                         reason="shape")
    array = np.ascontiguousarray(table.reshape(table.shape[1], table.shape[0]))
    _check_values(array, options.limits)
    return array


def preprocess_imu(data: bytes, options: PreprocessOptions) -> torch.Tensor:
    if not data:
        raise InputError("empty IMU data", reason="empty")
    array = _official(data, options) if options.behaviour.imu_by_name else _legacy(data, options)
    return fit_length(torch.from_numpy(array))[None]
