"""Bad input of every kind: each must become an `InputError` with a useful message and the right
`reason`, raised by a deliberate check (not the catch-all in `preprocess`), quickly, and before
anything large is decoded or allocated."""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import ImageFile

from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import Limits, PreprocessOptions, Profile, preprocess
from tests import media
from tests.helpers import png_claiming_size, write

pytestmark = pytest.mark.timeout(60)  # a hang is a failure, not a stuck CI job

K = InputKind
BOTH = [Profile.OFFICIAL, Profile.WEAVIATE_LEGACY]
IMAGE_KINDS = [K.IMAGE, K.DEPTH, K.THERMAL]
BINARY_KINDS = [K.IMAGE, K.AUDIO, K.VIDEO, K.DEPTH, K.THERMAL, K.IMU]


def rejected(kind: InputKind, data: bytes | str, options: PreprocessOptions | None = None) -> InputError:
    options = options or PreprocessOptions()
    with pytest.raises(InputError) as info:
        preprocess(kind, data, options)
    error = info.value
    # The catch-all wraps unexpected decoder exceptions; every case here has a deliberate check.
    assert not str(error).startswith(f"cannot decode {kind.value} input:"), f"unhandled failure: {error}"
    assert 10 < len(str(error)) < 400, str(error)
    return error


def halve(data: bytes) -> bytes:
    return data[: len(data) // 2]


@cache
def sample(name: str) -> bytes:
    """Valid media, generated once."""
    makers: dict[str, Callable[[], bytes]] = {
        "jpeg": lambda: media.image_bytes("JPEG"),
        "png": lambda: media.image_bytes("PNG"),
        "wav": lambda: media.audio_bytes("wav", 3),
        "mp4": lambda: media.video_bytes(2, 10, 96, 64),
        "imu-csv": lambda: media.imu_csv(media.imu_samples(100)),
    }
    return makers[name]()


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=True)
    return out.getvalue()


GARBAGE = np.random.default_rng(5).integers(0, 256, 5000, dtype=np.uint8).tobytes()


# Every kind ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", BOTH, ids=str)
@pytest.mark.parametrize("kind", BINARY_KINDS, ids=str)
def test_empty_bytes(kind: InputKind, profile: Profile) -> None:
    error = rejected(kind, b"", PreprocessOptions(profile=profile))
    assert error.reason == "empty" and "empty" in error.message


@pytest.mark.parametrize("profile", BOTH, ids=str)
@pytest.mark.parametrize("kind", BINARY_KINDS, ids=str)
def test_random_garbage(kind: InputKind, profile: Profile) -> None:
    error = rejected(kind, GARBAGE, PreprocessOptions(profile=profile))
    assert error.reason == "decode"


@pytest.mark.parametrize("kind", BINARY_KINDS, ids=str)
def test_over_max_item_bytes(kind: InputKind) -> None:
    data = {K.IMAGE: sample("png"), K.DEPTH: sample("png"), K.THERMAL: sample("jpeg"), K.AUDIO: sample("wav"),
            K.VIDEO: sample("mp4"), K.IMU: sample("imu-csv")}[kind]
    error = rejected(kind, data, PreprocessOptions(limits=Limits(max_item_bytes=len(data) - 1)))
    assert error.reason == "too_large" and str(len(data)) in error.message


def test_text_errors() -> None:
    assert rejected(K.TEXT, b"\xff\xfe\xfa not utf-8").reason == "decode"
    error = rejected(K.TEXT, "x" * 101, PreprocessOptions(limits=Limits(max_text_chars=100)))
    assert error.reason == "too_large" and "101" in error.message


@pytest.mark.parametrize("kind", BINARY_KINDS, ids=str)
def test_a_string_is_not_binary_input(kind: InputKind) -> None:
    assert rejected(kind, "a path, not bytes").reason == "invalid"


# Images, depth, thermal -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", IMAGE_KINDS, ids=str)
@pytest.mark.parametrize("name", ["jpeg", "png"])
def test_truncated_images(kind: InputKind, name: str) -> None:
    error = rejected(kind, halve(sample(name)))
    assert error.reason == "decode" and "truncated" in error.message


@pytest.mark.parametrize("kind", IMAGE_KINDS, ids=str)
@pytest.mark.parametrize("data", [b"timestamp,gyro_x\n0,1\n", b"hello, I am a text file\n", b"%PDF-1.4\n%..."],
                         ids=["csv", "text", "pdf"])
def test_non_images(kind: InputKind, data: bytes) -> None:
    error = rejected(kind, data)
    assert error.reason == "decode" and "not an image" in error.message


@pytest.mark.parametrize("kind", IMAGE_KINDS, ids=str)
@pytest.mark.parametrize("size", [(30000, 30000), (10000, 10000), (7000, 7000)])
def test_huge_declared_sizes_are_refused_before_decoding(kind: InputKind, size: tuple[int, int],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data = png_claiming_size(*size)
    assert len(data) < 200  # nothing big was ever allocated to make it

    def never(self):  # type: ignore[no-untyped-def]
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    error = rejected(kind, data)
    assert error.reason == "too_large" and "pixels" in error.message, error


@pytest.mark.parametrize("kind", IMAGE_KINDS, ids=str)
def test_aspect_ratio_over_the_limit(kind: InputKind) -> None:
    strip = media.encode_image(media.Image.new("RGB", (1020, 20), "gray"), "PNG")
    error = rejected(kind, strip)
    assert error.reason == "too_large" and "aspect" in error.message and "1020x20" in error.message
    assert preprocess(kind, strip, PreprocessOptions(limits=Limits(max_image_aspect_ratio=60))).shape[-1] == 224


# Audio ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", BOTH, ids=str)
def test_truncated_wav(profile: Profile) -> None:
    error = rejected(K.AUDIO, halve(sample("wav")), PreprocessOptions(profile=profile))
    assert error.reason == "decode" and "truncated" in error.message


def test_streamed_wav_with_unknown_length_is_accepted() -> None:
    """Streaming writers leave 0xFFFFFFFF as the data size: not a truncation."""
    data = bytearray(sample("wav"))
    at = data.index(b"data")
    data[at + 4: at + 8] = b"\xff\xff\xff\xff"
    assert preprocess(K.AUDIO, bytes(data), PreprocessOptions()).shape == (3, 1, 128, 204)


@pytest.mark.parametrize(("fmt", "refusal"), [
    ("flac", "corrupt audio"),  # a cut FLAC stream: its last frame fails its checksum
    ("mp3", None),  # lossy frames are self-contained: the first half decodes
    ("m4a-aac", "not an audio file FFmpeg can read"),  # the MP4 index (moov) is at the end: cut off
])
def test_truncated_compressed_audio_fails_cleanly_or_decodes_the_rest(fmt: str, refusal: str | None) -> None:
    """A cut compressed stream is refused as corrupt, or decoded up to the cut where its frames
    stand alone; which one is fixed per format (the test once accepted either for every format)."""
    data = halve(media.audio_bytes(fmt, 3))
    if refusal is None:
        out = preprocess(K.AUDIO, data, PreprocessOptions())
        assert out.shape == (3, 1, 128, 204) and bool(out.isfinite().all())
        assert not np.allclose(out.numpy(), preprocess(K.AUDIO, media.audio_bytes(fmt, 3), PreprocessOptions()))
    else:
        error = rejected(K.AUDIO, data, PreprocessOptions())
        assert error.reason == "decode" and error.message.startswith(refusal), error.message


def test_long_audio_is_refused_from_its_header_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    import imagebind_vectorizer.preprocess.audio as audio_module

    constructed: list[str] = []
    real = av.AudioResampler

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        constructed.append("resampler")
        return real(*args, **kwargs)

    monkeypatch.setattr(audio_module.av, "AudioResampler", spy)
    data = media.wav_bytes(media.tone(8, 8000), 8000)
    error = rejected(K.AUDIO, data, PreprocessOptions(limits=Limits(max_audio_seconds=3)))
    assert error.reason == "too_long" and "8.0 s long" in error.message
    assert constructed == [], "the header says 8 s: nothing should be decoded"


def test_long_audio_without_a_duration_header_is_stopped_while_decoding() -> None:
    import imagebind_vectorizer.preprocess.audio as audio_module

    data = media.encoded_audio(media.tone(8, 48000), 48000, "webm", "libopus", muxer_options={"live": "1"})
    with av.open(io.BytesIO(data)) as container:
        assert audio_module._header_seconds(container, container.streams.audio[0]) is None
    error = rejected(K.AUDIO, data, PreprocessOptions(limits=Limits(max_audio_seconds=3)))
    assert error.reason == "too_long" and "longer than the limit of 3 s" in error.message
    assert preprocess(K.AUDIO, data, PreprocessOptions()).shape == (3, 1, 128, 204)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_audio_shorter_than_one_fbank_frame(rate: int) -> None:
    data = media.wav_bytes(media.tone(0.02, rate), rate)
    error = rejected(K.AUDIO, data)
    assert error.reason == "too_short" and "25 ms" in error.message
    # 25 ms exactly is one frame and works.
    assert preprocess(K.AUDIO, media.wav_bytes(media.tone(0.025, 16000), 16000), PreprocessOptions()).shape[0] == 3


@pytest.mark.reference
def test_the_reference_loader_cannot_handle_audio_under_25_ms(ref, tmp_path: Path) -> None:
    """Why we refuse it: Kaldi's fbank in the official loader asserts that one 400-sample window
    fits (and a clip giving 0 frames would divide by zero in its padding warning)."""
    path = write(tmp_path, "short.wav", media.wav_bytes(media.tone(0.02, 16000), 16000))
    with pytest.raises(AssertionError, match="window size 400"):
        ref.data.load_and_transform_audio_data([str(path)], "cpu")


def test_audio_without_samples_or_audio_stream() -> None:
    header_only = media.wav_bytes(media.tone(0.0, 16000), 16000)
    assert rejected(K.AUDIO, header_only).reason == "decode"
    error = rejected(K.AUDIO, sample("mp4"))  # a video without an audio track
    assert error.reason == "decode" and "no audio stream" in error.message
    assert rejected(K.AUDIO, sample("png")).reason == "decode"


# Video ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", BOTH, ids=str)
def test_truncated_mp4(profile: Profile, tmp_path: Path) -> None:
    assert rejected(K.VIDEO, halve(sample("mp4")), PreprocessOptions(profile=profile)).reason == "decode"


def test_truncated_mp4_with_its_index_first(tmp_path: Path) -> None:
    """With the index at the front (faststart) the header announces every frame; fewer decode."""
    path = tmp_path / "faststart.mp4"
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for index in range(30):
            for packet in stream.encode(av.VideoFrame.from_image(media.picture(96, 64, seed=index))):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    error = rejected(K.VIDEO, halve(path.read_bytes()))
    assert error.reason == "decode" and "truncated" in error.message


@pytest.mark.parametrize("profile", BOTH, ids=str)
def test_long_video_is_refused_from_its_header(profile: Profile) -> None:
    data = media.video_bytes(5, 4, 64, 48)
    error = rejected(K.VIDEO, data, PreprocessOptions(profile=profile, limits=Limits(max_video_seconds=2)))
    assert error.reason == "too_long" and "5.0 s long" in error.message


@pytest.mark.parametrize("profile", BOTH, ids=str)
def test_long_video_without_a_duration_header_is_stopped_while_decoding(profile: Profile) -> None:
    data = media.video_bytes(5, 8, 64, 48, container="webm", codec="libvpx-vp9", muxer_options={"live": "1"})
    with av.open(io.BytesIO(data)) as container:
        assert container.duration is None and container.streams.video[0].duration is None
    error = rejected(K.VIDEO, data, PreprocessOptions(profile=profile, limits=Limits(max_video_seconds=2)))
    assert error.reason == "too_long" and "longer than the limit of 2 s" in error.message


@pytest.mark.parametrize("profile", BOTH, ids=str)
def test_video_frames_over_the_pixel_limit(profile: Profile) -> None:
    error = rejected(K.VIDEO, sample("mp4"),
                     PreprocessOptions(profile=profile, limits=Limits(max_video_frame_pixels=96 * 64 - 1)))
    assert error.reason == "too_large" and "96x64" in error.message


@pytest.mark.parametrize("profile", BOTH, ids=str)
@pytest.mark.parametrize("fmt", ["wav", "m4a-aac"])
def test_audio_sent_as_video(profile: Profile, fmt: str) -> None:
    error = rejected(K.VIDEO, media.audio_bytes(fmt, 2), PreprocessOptions(profile=profile))
    assert error.reason == "decode" and "no video stream" in error.message


# IMU ------------------------------------------------------------------------------------------------
HEADER = ",".join(media.IMU_HEADER)


def csv(*rows: str, header: str | None = HEADER) -> bytes:
    return "\n".join(([header] if header else []) + list(rows)).encode()


IMU_CASES: list[tuple[str, Profile, Callable[[], bytes], str, str]] = [
    ("nan", Profile.OFFICIAL, lambda: media.imu_csv(np.full((6, 10), np.nan)), "invalid", "NaN"),
    ("inf", Profile.OFFICIAL, lambda: media.imu_csv(np.full((6, 10), np.inf)), "invalid", "infinite"),
    ("nan-legacy", Profile.WEAVIATE_LEGACY, lambda: media.imu_csv(np.full((6, 10), np.nan)), "invalid", "NaN"),
    ("nan-npy", Profile.OFFICIAL, lambda: npy(np.full((6, 10), np.nan, np.float32)), "invalid", "NaN"),
    ("five-columns-no-header", Profile.OFFICIAL, lambda: csv("1,2,3,4,5", "1,2,3,4,5", header=None), "shape",
     "5 columns"),
    ("seven-columns-legacy", Profile.WEAVIATE_LEGACY, lambda: csv("1,2,3,4,5,6,7", header="a,b,c,d,e,f,g"),
     "shape", "7 columns"),
    ("ragged-rows", Profile.OFFICIAL, lambda: csv("1,2,3,4,5,6", "1,2,3"), "shape", "different lengths"),
    ("row-longer-than-header", Profile.OFFICIAL, lambda: csv("1,2,3,4,5,6,7"), "shape", "header names 6"),
    ("non-numeric", Profile.OFFICIAL, lambda: csv("1,2,3,4,5,6", "1,2,3,4,5,abc"), "decode", "line 3"),
    ("non-numeric-legacy", Profile.WEAVIATE_LEGACY, lambda: csv("1,2,3,4,5,6", "1,2,x,4,5,6"), "decode", "line 3"),
    ("header-missing-channels", Profile.OFFICIAL,
     lambda: csv("1,2,3,4,5,6", header="gyro_x,gyro_y,gyro_z,accl_x,accl_y,temperature"), "shape", "accl_z"),
    ("header-only", Profile.OFFICIAL, lambda: csv(), "empty", "no samples"),
    ("header-only-legacy", Profile.WEAVIATE_LEGACY, lambda: csv(), "empty", "no samples"),
    ("blank-lines", Profile.OFFICIAL, lambda: b"\n \n\n", "empty", "empty"),
    ("too-many-rows", Profile.OFFICIAL, lambda: media.imu_csv(media.imu_samples(601)), "too_large", "601"),
    ("too-many-rows-legacy", Profile.WEAVIATE_LEGACY, lambda: media.imu_csv(media.imu_samples(601)), "too_large",
     "601"),
    ("too-many-samples-npy", Profile.OFFICIAL, lambda: media.imu_npy(media.imu_samples(601)), "too_large", "601"),
    ("npy-object-pickle", Profile.OFFICIAL, lambda: npy(np.array([{"a": 1}] * 6, dtype=object)), "decode", "pickle"),
    ("npy-complex", Profile.OFFICIAL, lambda: npy(np.ones((6, 10), np.complex64)), "invalid", "complex"),
    ("npy-bool", Profile.OFFICIAL, lambda: npy(np.ones((6, 10), np.bool_)), "invalid", "bool"),
    ("npy-three-channels", Profile.OFFICIAL, lambda: npy(np.zeros((3, 100), np.float32)), "shape", "(3, 100)"),
    ("npy-samples-first", Profile.OFFICIAL, lambda: npy(np.zeros((100, 6), np.float32)), "shape", "transpose"),
    ("npy-3d", Profile.OFFICIAL, lambda: npy(np.zeros((6, 10, 2), np.float32)), "shape", "(6, 10, 2)"),
    ("npy-corrupt", Profile.OFFICIAL, lambda: halve(npy(np.zeros((6, 1000), np.float32))), "decode", ".npy"),
    ("npy-legacy", Profile.WEAVIATE_LEGACY, lambda: media.imu_npy(media.imu_samples(10)), "decode", "only as CSV"),
    ("utf16-text", Profile.OFFICIAL, lambda: csv("1,2,3,4,5,6").decode().encode("utf-16"), "decode", "UTF-8"),
]


@pytest.mark.parametrize(("name", "profile", "make", "reason", "words"), IMU_CASES, ids=[c[0] for c in IMU_CASES])
def test_bad_imu_data(name: str, profile: Profile, make: Callable[[], bytes], reason: str, words: str) -> None:
    error = rejected(K.IMU, make(), PreprocessOptions(profile=profile, limits=Limits(max_imu_samples=600)))
    assert error.reason == reason, f"{name}: {error.reason} ({error})"
    assert words in error.message, f"{name}: {error.message!r} does not mention {words!r}"


def test_embedder_reports_which_item_failed(tiny_embedder) -> None:
    with pytest.raises(InputError) as info:
        tiny_embedder.embed("image", [sample("png"), halve(sample("jpeg"))])
    assert (info.value.field, info.value.index, info.value.reason) == ("image", 1, "decode")
    assert str(info.value).startswith("image[1]: ")


def test_embedder_refuses_kinds_whose_encoder_is_not_loaded(make_embedder) -> None:
    text_only = make_embedder(modalities="text")
    with pytest.raises(InputError) as info:
        text_only.embed("audio", [sample("wav")])
    assert info.value.reason == "disabled" and "text" in str(info.value)


def test_embedding_nothing_gives_an_empty_matrix(tiny_embedder) -> None:
    assert tiny_embedder.embed("image", []).shape == (0, tiny_embedder.config.out_embed_dim)
