"""Video -> (15, 3, 2, 224, 224): 5 clips x 3 spatial crops of 2 frames each, as ImageBind does.

Decoded with PyAV (FFmpeg) in memory. Which frames make a clip is where the profiles differ:
- official: the reference decodes with decord: duration = frames / average fps, and clip k takes
  frame indices ceil(fps * start) .. min(ceil(fps * end), frames) - 1;
- weaviate-legacy: pytorchvideo 0.1.5's PyAV decoder: duration from the stream header, and clip k
  takes the frames whose pts lies in [ceil(start / time_base), ceil(end / time_base)).
Each clip keeps its first and last frame (UniformTemporalSubsample(2)); frames are scaled to
[0, 1], short side to 224 (bilinear, no antialias), normalised, and cropped left/centre/right."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import torch
from torch.nn import functional as F

from imagebind_vectorizer.errors import InputError, first_line
from imagebind_vectorizer.kinds import IMAGE_SIZE, VIDEO_CLIPS, VIDEO_CROPS
from imagebind_vectorizer.preprocess.clips import clip_bounds
from imagebind_vectorizer.preprocess.imaging import CLIP_MEAN, CLIP_STD
from imagebind_vectorizer.preprocess.profiles import Limits, PreprocessOptions

CLIP_SECONDS = 2
CLIPS = VIDEO_CLIPS
FRAMES_PER_CLIP = 2
CROPS = VIDEO_CROPS


@dataclass
class _ClipFrames:
    """First and last frame (as decoded, not yet converted) of one clip, and their pts."""

    first: av.VideoFrame | None = None
    last: av.VideoFrame | None = None
    first_pts: int = 0
    last_pts: int = 0

    def add(self, frame: av.VideoFrame, pts: int) -> None:
        """Frames may come in any pts order; of equal pts the later decoded one wins, as in the
        pts-keyed dict of pytorchvideo's decoder."""
        if self.first is None or pts <= self.first_pts:
            self.first, self.first_pts = frame, pts
        if self.last is None or pts >= self.last_pts:
            self.last, self.last_pts = frame, pts


def preprocess_video(data: bytes, options: PreprocessOptions) -> torch.Tensor:
    limits = options.limits
    if not data:
        raise InputError("empty video", reason="empty")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except Exception as exc:
        raise InputError(f"not a video FFmpeg can read: {first_line(exc)}", reason="decode") from exc
    with container:
        stream = video_stream(container, limits)
        try:
            if options.behaviour.video_frames_by_index:
                clips = _frames_by_index(container, stream, limits)
            else:
                clips = _frames_by_pts(data, container, stream, limits)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"corrupt video: {first_line(exc)}", reason="decode") from exc
        views = [view for clip in clips for view in clip_views(clip.first, clip.last)]
    return torch.stack(views)


def video_stream(container: av.container.InputContainer, limits: Limits,
                 max_seconds: float | None = None) -> av.video.stream.VideoStream:
    """The first video stream, checked against the frame-size and duration limits (`max_seconds`
    instead of the item limit when a long file is segmented)."""
    max_seconds = limits.max_video_seconds if max_seconds is None else max_seconds
    if not container.streams.video:
        raise InputError("no video stream in the file", reason="decode")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > limits.max_video_frame_pixels:
        raise InputError(f"video frames are {width}x{height}, over the limit of "
                         f"{limits.max_video_frame_pixels} pixels", reason="too_large")
    seconds = None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    if seconds is not None and seconds > max_seconds + 1:
        raise InputError(f"video is {seconds:.1f} s long, over the limit of {max_seconds:g} s", reason="too_long")
    stream.thread_type = "AUTO"  # frame-threaded decoding; output order is unchanged
    return stream


def _decoded_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                    limits: Limits):
    """Every frame in presentation order, refusing to run past the duration limit."""
    rate = float(stream.average_rate or stream.guessed_rate or 30)
    max_frames = int(limits.max_video_seconds * rate) + 2
    for count, frame in enumerate(container.decode(stream), start=1):
        if count > max_frames:
            raise InputError(f"video is longer than the limit of {limits.max_video_seconds:g} s",
                             reason="too_long")
        yield frame


def _frames_by_index(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                     limits: Limits) -> list[_ClipFrames]:
    fps_fraction = stream.average_rate or stream.guessed_rate
    if not fps_fraction:
        raise InputError("video stream has no frame rate", reason="decode")
    fps = float(fps_fraction)
    total = stream.frames or _count_packets(container, stream)
    if total < 1:
        raise InputError("video stream holds no frames", reason="decode")
    wanted = clip_frame_indices(total, fps)
    needed = {index for pair in wanted for index in pair}
    picked: dict[int, av.VideoFrame] = {}
    last_needed = max(needed)
    for index, frame in enumerate(_decoded_frames(container, stream, limits)):
        if index in needed:
            picked[index] = frame
        if index >= last_needed:
            break
    if len(picked) != len(needed):
        raise InputError(f"video is truncated: its header announces {total} frames but fewer decode",
                         reason="decode")
    return [_ClipFrames(picked[a], picked[b]) for a, b in wanted]


def _frames_by_pts(data: bytes, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                   limits: Limits) -> list[_ClipFrames]:
    """Clip k keeps the first and last frame (by pts) whose pts lies in its range. Frames stream
    past: only the (at most 10) frames that are some clip's first or last so far are held."""
    time_base = stream.time_base
    if time_base is None:
        raise InputError("video stream has no time base", reason="decode")
    start_pts = stream.start_time or 0
    if stream.duration is not None:
        duration_pts = stream.duration
    else:  # no duration in the header: pytorchvideo takes the last frame's pts; a first pass finds it
        with _reopen(data) as counting:
            found = [frame.pts for frame in _decoded_frames(counting, video_stream(counting, limits), limits)
                     if frame.pts is not None]
        if not found:
            raise InputError("video stream holds no frames", reason="decode")
        duration_pts = max(found)
    ranges = clip_pts_ranges(int(duration_pts - start_pts), time_base, start_pts)
    clips = [_ClipFrames() for _ in ranges]
    for frame in _decoded_frames(container, stream, limits):
        if frame.pts is None:
            continue  # pytorchvideo keys frames by pts: one without is dropped
        for clip, (low, high) in zip(clips, ranges, strict=True):
            if low <= frame.pts < high:
                clip.add(frame, frame.pts)
    if any(clip.first is None for clip in clips):
        raise InputError("a clip of the video holds no frames", reason="decode")
    return clips


def clip_frame_indices(total: int, fps: float) -> list[tuple[int, int]]:
    """(first, last) frame index of each clip of a video of `total` frames at `fps` (decord's
    indexing, as the official loader uses it)."""
    wanted: list[tuple[int, int]] = []
    for start, end in clip_bounds(total / fps, CLIP_SECONDS, CLIPS, minus_one=True):
        first, stop = math.ceil(fps * start), min(math.ceil(fps * end), total)
        if stop <= first:
            raise InputError("a clip of the video holds no frames", reason="decode")
        wanted.append((first, stop - 1))
    return wanted


def clip_pts_ranges(duration_pts: int, time_base: Fraction, start_pts: int) -> list[tuple[int, int]]:
    """[low, high) pts of each clip of a stream `duration_pts` long that starts at `start_pts`
    (pytorchvideo 0.1.5's PyAV decoder, as Weaviate's container uses it)."""
    duration = duration_pts * Fraction(time_base)
    return [(math.ceil(start / time_base) + start_pts, math.ceil(end / time_base) + start_pts)
            for start, end in clip_bounds(duration, CLIP_SECONDS, CLIPS, minus_one=False)]


def _reopen(data: bytes) -> av.container.InputContainer:
    return av.open(io.BytesIO(data), mode="r")


def _count_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    count = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0, stream=stream)
    return count


def clip_views(first: av.VideoFrame | None, last: av.VideoFrame | None) -> list[torch.Tensor]:
    """A clip's first and last frame -> its CROPS views, each (3, 2, 224, 224)."""
    assert first is not None and last is not None
    frames = np.stack([first.to_ndarray(format="rgb24"), last.to_ndarray(format="rgb24")])
    video = torch.from_numpy(frames).permute(3, 0, 1, 2).to(torch.float32) / 255.0  # (C, T, H, W)
    video = _short_side_scale(video, IMAGE_SIZE)
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32)[:, None, None, None]
    std = torch.tensor(CLIP_STD, dtype=torch.float32)[:, None, None, None]
    video = video.sub_(mean).div_(std)
    return [_spatial_crop(video, IMAGE_SIZE, index) for index in range(CROPS)]


def _short_side_scale(video: torch.Tensor, size: int) -> torch.Tensor:
    _, _, height, width = video.shape
    if width < height:
        new_h, new_w = math.floor(float(height) / width * size), size
    else:
        new_h, new_w = size, math.floor(float(width) / height * size)
    return F.interpolate(video, size=(new_h, new_w), mode="bilinear", align_corners=False)


def _spatial_crop(video: torch.Tensor, size: int, index: int) -> torch.Tensor:
    """Crop 0/1/2 = start/centre/end of the longer side (width when square)."""
    height, width = video.shape[2], video.shape[3]
    y = math.ceil((height - size) / 2)
    x = math.ceil((width - size) / 2)
    if height > width:
        y = {0: 0, 1: y, 2: height - size}[index]
    else:
        x = {0: 0, 1: x, 2: width - size}[index]
    return video[:, :, y: y + size, x: x + size]
