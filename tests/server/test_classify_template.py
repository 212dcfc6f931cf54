"""`classify --template` (README: "Default templates (`--template` overrides)"): the labels are
embedded through the given template instead of the kind's default, and ranked by
softmax(text logit scale x cosine) over those prompts. Our server in process; no Weaviate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imagebind_vectorizer.cli import main
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.runtime.embedder import Embedder
from tests.server.support import InProcessServer

LABELS = ["a dog", "rain", "a car engine"]
QUERY = "something barks in the street"


def classify_json(capsys: pytest.CaptureFixture[str], server: InProcessServer, *extra: str) -> list[dict]:
    capsys.readouterr()
    code = main(["classify", "--labels", ",".join(LABELS), "--text", QUERY, "--json", "--no-progress",
                 "--server", f"http://127.0.0.1:{server.http_port}", *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def expected_probabilities(reference: Embedder, prompts: list[str]) -> np.ndarray:
    vectors = reference.embed(InputKind.TEXT, [*prompts, QUERY]).astype(np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    logits = reference.model_info().logit_scales["text"] * (vectors[:-1] @ vectors[-1])
    return np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()


def test_the_template_replaces_the_default_prompt(capsys, server: InProcessServer, reference: Embedder) -> None:
    template = "a sketch of {label}, drawn in pencil"
    scores = classify_json(capsys, server, "--template", template)
    prompts = {s["label"]: s["prompt"] for s in scores}
    assert prompts == {label: f"a sketch of {label}, drawn in pencil" for label in LABELS}
    expected = expected_probabilities(reference, [prompts[label] for label in LABELS])
    got = {s["label"]: s["probability"] for s in scores}
    for label, probability in zip(LABELS, expected, strict=True):
        assert got[label] == pytest.approx(probability, abs=1e-4)

    default = classify_json(capsys, server)  # text's default template is the bare label
    assert {s["label"]: s["prompt"] for s in default} == {label: label for label in LABELS}
    assert {s["label"]: s["cosine"] for s in default} != {s["label"]: s["cosine"] for s in scores}


def test_a_template_without_the_label_is_refused(capsys, server: InProcessServer) -> None:
    code = main(["classify", "--labels", ",".join(LABELS), "--text", QUERY, "--template", "a photo",
                 "--server", f"http://127.0.0.1:{server.http_port}"])
    assert code == 2 and "must contain {label}" in capsys.readouterr().err
