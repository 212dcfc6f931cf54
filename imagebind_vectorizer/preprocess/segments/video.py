"""A long video -> per window, the pictures' (15, 3, 2, 224, 224) input and the soundtrack's
(3, 1, 128, 204) input, from one pass over the file.

Which frames make a window's clips follows the profile's rule applied to the window as if it were
a file of its own:
- official (decord's indexing): the window holds frame indices ceil(fps * start) ..
  ceil(fps * end) - 1 (the last window runs to the last frame); the 5 clips are laid over those n
  frames with `clip_frame_indices(n, fps)`, exactly as for a file of n frames;
- weaviate-legacy (pts, as pytorchvideo 0.1.5): the window's frames are those whose time is in
  [start, end); the clip ranges are `clip_pts_ranges` from the window's first frame.
Only the (at most 10) frames those clips use are held, and only until their window is complete;
the soundtrack is kept on a `SampleTimeline` until its window is cut. A frame count the header
does not give is learnt from a first pass over the packets (no decoding)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import av
import torch

from imagebind_vectorizer.errors import InputError, first_line
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.moments import SourceLimits, Window, WindowSpec
from imagebind_vectorizer.preprocess.profiles import PreprocessOptions
from imagebind_vectorizer.preprocess.segments.audio import MAX_WINDOW_VALUES, audio_part, to_float_samples
from imagebind_vectorizer.preprocess.segments.source import Source, open_container, stream_seconds
from imagebind_vectorizer.preprocess.segments.timeline import GAP_TOLERANCE_S, SampleTimeline
from imagebind_vectorizer.preprocess.segments.types import SegmentInput
from imagebind_vectorizer.preprocess.video import CLIPS, clip_frame_indices, clip_pts_ranges, clip_views, video_stream

#: windows whose pictures are done may wait this many for their soundtrack before going without it
MAX_WAITING_WINDOWS = 3


@dataclass
class _Pictures:
    """One window's frame selection in progress."""

    window: Window
    first_index: int = 0  # official: the window's frame indices are [first_index, stop_index)
    stop_index: int = 0
    wanted: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # index -> [(clip, end)]
    ranges: list[tuple[int, int]] | None = None  # legacy: clip pts ranges, set at the first frame
    first: list[av.VideoFrame | None] = field(default_factory=lambda: [None] * CLIPS)
    last: list[av.VideoFrame | None] = field(default_factory=lambda: [None] * CLIPS)
    error: InputError | None = None
    done: bool = False

    def take_by_pts(self, pts: int, frame: av.VideoFrame, time_base: Fraction) -> None:
        if self.ranges is None:
            self.ranges = clip_pts_ranges(round(self.window.seconds / time_base), time_base, pts)
        for clip, (low, high) in enumerate(self.ranges):
            if low <= pts < high:
                if self.first[clip] is None:
                    self.first[clip] = frame
                self.last[clip] = frame

    def rows(self) -> torch.Tensor:
        if any(f is None for f in self.first) or any(f is None for f in self.last):
            raise InputError("a clip of the window holds no frames", reason="decode")
        views = [view for a, b in zip(self.first, self.last, strict=True) for view in clip_views(a, b)]
        self.first = self.last = [None] * CLIPS  # the frames are no longer needed
        return torch.stack(views)


def video_windows(source: Source, spec: WindowSpec, options: PreprocessOptions,
                  limits: SourceLimits) -> Iterator[SegmentInput]:
    by_index = options.behaviour.video_frames_by_index
    total, end_pts = _frame_count(source, options, limits)
    with open_container(source, "video") as container:
        stream = video_stream(container, options.limits, max_seconds=limits.max_seconds)
        time_base = stream.time_base
        fps_fraction = stream.average_rate or stream.guessed_rate
        if not fps_fraction or time_base is None:
            raise InputError("video stream has no frame rate or time base", reason="decode")
        fps = float(fps_fraction)
        origin_pts = stream.start_time or 0
        if by_index:
            duration = total / fps
        else:
            duration_pts = stream.duration if stream.duration is not None else end_pts - origin_pts
            duration = float(duration_pts * time_base)
        limits.check_seconds(duration)
        windows = spec.windows(duration)
        if not windows:
            raise InputError("the video holds no frames", reason="decode")
        pictures = [_plan(w, i == len(windows) - 1, total, Fraction(fps_fraction)) if by_index else _Pictures(w)
                    for i, w in enumerate(windows)]

        sound = container.streams.audio[0] if container.streams.audio else None
        timeline: SampleTimeline | None = None
        sound_error: InputError | None = None
        if sound is not None:
            rate = sound.rate or sound.codec_context.sample_rate
            channels = max(sound.codec_context.channels or 1, 1)
            per_window = int(spec.seconds * rate) + 1 if rate else 0
            if not rate:
                sound = None
            elif per_window * channels > MAX_WINDOW_VALUES:
                sound_error = InputError(f"the soundtrack's {channels} channels at {rate} Hz are too many to "
                                         "segment", reason="too_large")
                sound = None
            else:
                timeline = SampleTimeline(rate, origin_s=float(origin_pts * time_base),
                                          max_buffer_samples=(MAX_WAITING_WINDOWS + 2) * per_window)
        resampler = av.AudioResampler(format="flt")
        emitted = 0  # windows handed out so far
        open_from = 0  # first window whose pictures may still take frames
        index = -1  # the last frame's index on the file's frame count
        last_time = None

        def finished_windows(eof: bool) -> Iterator[SegmentInput]:
            nonlocal emitted, sound_error
            while emitted < len(pictures) and pictures[emitted].done:
                window = pictures[emitted].window
                if timeline is not None and sound_error is None and not eof and not timeline.covers(window.end):
                    if open_from - emitted <= MAX_WAITING_WINDOWS:
                        return  # wait for the soundtrack of this window
                    sound_error = InputError("the soundtrack is not interleaved with the pictures closely enough "
                                             "to segment it", reason="decode")
                yield _segment(pictures[emitted], timeline, sound_error, options)
                emitted += 1
                if timeline is not None and emitted < len(pictures):
                    timeline.discard_before(pictures[emitted].window.start)

        fatal: InputError | None = None
        streams = [stream] if sound is None else [stream, sound]
        try:
            for packet in container.demux(streams):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as exc:
                    _mark_damage(pictures, open_from, packet, time_base if packet.stream is stream else None,
                                 origin_pts, exc)
                    continue
                if packet.stream is stream:
                    for frame in frames:
                        pts = frame.pts
                        time = float((pts - origin_pts) * time_base) if pts is not None else None
                        if time is not None and last_time is not None and time - last_time > max(2.5 / fps,
                                                                                                   GAP_TOLERANCE_S):
                            _damage(pictures, open_from, last_time + 1 / fps, time, "pictures")
                            next_index = round(time * fps)
                        else:
                            next_index = index + 1
                        index = next_index
                        last_time = time if time is not None else last_time
                        if by_index:
                            if index >= total:
                                continue
                            limits_hit = index / fps > limits.max_seconds
                        else:
                            if time is None:
                                continue
                            limits_hit = time > limits.max_seconds
                        if limits_hit:
                            raise InputError(f"the video decodes to more than the limit of {limits.max_seconds:g} s",
                                             reason="too_long")
                        open_from = _assign(pictures, open_from, index, pts, time, frame, by_index, time_base)
                    yield from finished_windows(eof=False)
                elif timeline is not None and sound_error is None:
                    try:
                        for frame, samples in zip(frames, to_float_samples(frames, resampler), strict=False):
                            frame_s = float(frame.pts * frame.time_base) if frame.pts is not None else None
                            timeline.add(samples, frame_s)
                    except (OverflowError, ValueError) as exc:
                        sound_error = InputError(f"the soundtrack cannot be segmented: {exc}", reason="decode")
                    yield from finished_windows(eof=False)
        except InputError:
            raise
        except Exception as exc:  # the demuxer gave up: keep what was decoded, report the rest
            fatal = InputError(f"the video breaks off after frame {index + 1}: {first_line(exc)}", reason="decode")
        if timeline is not None:
            timeline.finished = True
        broken = None
        for position in range(open_from, len(pictures)):
            plan = pictures[position]
            if by_index:
                missing = index + 1 < min(plan.stop_index, total)
            else:
                missing = last_time is None or plan.window.end - last_time > max(2.5 / fps, GAP_TOLERANCE_S)
            if missing:
                broken = broken if broken is not None else position
                plan.error = plan.error or InputError("the window's frames are missing", reason="decode")
            plan.done = True
        announced = stream_seconds(container, stream)
        decoded = (index + 1) / fps if by_index else (last_time + 1 / fps if last_time is not None else 0.0)
        if fatal is None and broken is None and announced is not None and decoded < announced - 1.0:
            fatal = InputError(f"the video is truncated: its header announces {announced:.2f} s but only "
                               f"{decoded:.2f} s decode", reason="decode")
        if broken is not None and fatal is None:
            fatal = InputError(f"the video is truncated: {total if by_index else 'its header'} frames announced, "
                               f"{index + 1} decoded", reason="decode")
        if broken is not None:
            # Windows past the damage are not reported one by one: the final error names where it ends.
            del pictures[broken + 1:]
        yield from finished_windows(eof=True)
        if fatal is not None:
            raise fatal


def _plan(window: Window, last: bool, total: int, fps: Fraction) -> _Pictures:
    # Exact arithmetic: at 30000/1001 fps a window starting at 1001 s starts at frame 30000, where
    # a float product can land just above the integer and ceil() would skip a frame.
    first = math.ceil(Fraction(window.start) * fps)
    stop = total if last else min(math.ceil(Fraction(window.end) * fps), total)
    plan = _Pictures(window, first_index=first, stop_index=stop)
    if stop <= first:
        plan.error = InputError("the window holds no frames", reason="decode")
        return plan
    try:
        for clip, (a, b) in enumerate(clip_frame_indices(stop - first, float(fps))):
            plan.wanted.setdefault(first + a, []).append((clip, "first"))
            plan.wanted.setdefault(first + b, []).append((clip, "last"))
    except InputError as exc:
        plan.error = exc
    return plan


def _assign(pictures: list[_Pictures], open_from: int, index: int, pts: int | None, time: float | None,
            frame: av.VideoFrame, by_index: bool, time_base: Fraction) -> int:
    """Give a frame to the windows that use it; returns the first window still open."""
    for position in range(open_from, len(pictures)):
        plan = pictures[position]
        if by_index:
            if index >= plan.stop_index:
                plan.done = True
                continue
            if index < plan.first_index:
                break
            for clip, end in plan.wanted.get(index, ()):
                (plan.first if end == "first" else plan.last)[clip] = frame
        else:
            assert time is not None and pts is not None
            if time >= plan.window.end:
                plan.done = True
                continue
            if time < plan.window.start:
                break
            plan.take_by_pts(pts, frame, time_base)
    while open_from < len(pictures) and pictures[open_from].done:
        open_from += 1
    return open_from


def _damage(pictures: list[_Pictures], open_from: int, start: float, end: float, what: str) -> None:
    for plan in pictures[open_from:]:
        if plan.window.start < end and plan.window.end > start and plan.error is None:
            plan.error = InputError(f"{what} from {start:.2f} s to {end:.2f} s could not be decoded", reason="decode")


def _mark_damage(pictures: list[_Pictures], open_from: int, packet: av.Packet, time_base: Fraction | None,
                 origin_pts: int, exc: Exception) -> None:
    if time_base is None or packet.pts is None:
        return  # a soundtrack packet: the gap in its samples marks the damage
    start = float((packet.pts - origin_pts) * time_base)
    _damage(pictures, open_from, start, start + float((packet.duration or 1) * time_base), "pictures")


def _segment(plan: _Pictures, timeline: SampleTimeline | None, sound_error: InputError | None,
             options: PreprocessOptions) -> SegmentInput:
    segment = SegmentInput(plan.window)
    if plan.error is not None:
        segment.errors[InputKind.VIDEO] = plan.error
    else:
        try:
            segment.rows[InputKind.VIDEO] = plan.rows()
        except InputError as exc:
            segment.errors[InputKind.VIDEO] = exc
    if sound_error is not None:
        segment.errors[InputKind.AUDIO] = sound_error
    elif timeline is not None:
        rows, error = audio_part(timeline, plan.window, options)
        if rows is not None:
            segment.rows[InputKind.AUDIO] = rows
        elif error is not None:
            segment.errors[InputKind.AUDIO] = error
    return segment


def _frame_count(source: Source, options: PreprocessOptions, limits: SourceLimits) -> tuple[int, int]:
    """(frames, end pts) of the first video stream: the header's count when it has one, else a
    pass over the packets (no decoding)."""
    with open_container(source, "video") as container:
        stream = video_stream(container, options.limits, max_seconds=limits.max_seconds)
        if stream.frames and (options.behaviour.video_frames_by_index or stream.duration is not None):
            return stream.frames, (stream.start_time or 0) + (stream.duration or 0)
        count, end = 0, stream.start_time or 0
        try:
            for packet in container.demux(stream):
                if packet.size:
                    count += 1
                    if packet.pts is not None:
                        end = max(end, packet.pts + (packet.duration or 0))
        except Exception as exc:
            if count == 0:
                raise InputError(f"corrupt video: {first_line(exc)}", reason="decode") from exc
        if count == 0:
            raise InputError("the video stream holds no frames", reason="decode")
        # Packets lost to damage leave a hole in the pts, not in the count: the pts tell the length.
        fps = stream.average_rate or stream.guessed_rate
        by_time = round((end - (stream.start_time or 0)) * stream.time_base * fps) if fps and stream.time_base else 0
        return max(count, by_time), end
