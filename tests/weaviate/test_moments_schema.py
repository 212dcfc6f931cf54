"""Moment collections without a Weaviate: object identity, the schema's reserved names, how hits
become per-file moments, and where the ingester finds our server's gRPC port."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from imagebind_vectorizer.moments import WindowSpec
from imagebind_vectorizer.settings import ConnectionSettings
from imagebind_vectorizer.weaviate.errors import SchemaError
from imagebind_vectorizer.weaviate.moments import (
    MODULE_FIELDS,
    _group,
    format_timestamp,
    make_moments_spec,
    moment_uuid,
    settings_key,
)


def test_a_moments_identity_is_its_content_window_settings_and_part() -> None:
    key = settings_key(WindowSpec(10, 0), "official")
    base = moment_uuid("ab" * 32, 3, 30.0, 40.0, key, "audio")
    assert base == moment_uuid("ab" * 32, 3, 30.0, 40.0, key, "audio")  # a rerun finds the same object
    others = {
        moment_uuid("cd" * 32, 3, 30.0, 40.0, key, "audio"),
        moment_uuid("ab" * 32, 4, 40.0, 50.0, key, "audio"),
        moment_uuid("ab" * 32, 3, 30.0, 40.0, key, "visual"),
        moment_uuid("ab" * 32, 3, 30.0, 40.0, settings_key(WindowSpec(10, 2), "official"), "audio"),
        moment_uuid("ab" * 32, 3, 30.0, 40.0, settings_key(WindowSpec(10, 0), "weaviate-legacy"), "audio"),
    }
    assert base not in others and len(others) == 5


def test_the_module_config_names_the_video_and_audio_fields() -> None:
    assert MODULE_FIELDS == {"videoFields": "video", "audioFields": "audio"}


@pytest.mark.parametrize("name", ["start", "part", "sha256", "audio", "title"])
def test_built_in_property_names_are_refused_as_metadata(name: str) -> None:
    with pytest.raises(SchemaError, match="built into moment collections"):
        make_moments_spec("Lectures", properties=[f"{name}:text"])
    assert make_moments_spec("Lectures", properties=["speaker", "year:int"]).properties == [("speaker", "text"),
                                                                                          ("year", "int")]


def _hit(segment: int, part: str, distance: float) -> SimpleNamespace:
    props = {"segment": segment, "part": part, "start": segment * 10.0, "end": segment * 10.0 + 10, "source": "a.mp4",
             "sha256": "f" * 64, "media": "video", "speaker": "Ada", "settingsKey": "x"}
    return SimpleNamespace(properties=props, uuid=f"{segment}-{part}", metadata=SimpleNamespace(distance=distance,
                                                                                                 score=None))


def test_a_windows_parts_merge_into_one_moment_ranked_by_its_best_part() -> None:
    group = SimpleNamespace(name="f" * 64, objects=[_hit(4, "visual", 0.30), _hit(7, "audio", 0.10),
                                                    _hit(4, "audio", 0.05), _hit(9, "visual", 0.50)])
    result = _group(group, "distance", per_file=2)
    assert [(m.segment, m.parts) for m in result.moments] == [(4, {"visual": 0.30, "audio": 0.05}),
                                                             (7, {"audio": 0.10})]
    assert (result.source, result.media, result.properties) == ("a.mp4", "video", {"speaker": "Ada"})


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (75.0, "1:15"), (3725.5, "1:02:05.5")])
def test_timestamps_read_like_a_player_shows_them(seconds: float, text: str) -> None:
    assert format_timestamp(seconds) == text


def test_the_segment_stream_goes_to_the_servers_host_on_its_grpc_port_unless_told() -> None:
    assert ConnectionSettings.load(env={}, server="http://10.0.0.7:8011").server_grpc_address() == "10.0.0.7:50061"
    assert ConnectionSettings.load(env={"IMAGEBIND_SERVER_GRPC": "vec:9000"}).server_grpc_address() == "vec:9000"
