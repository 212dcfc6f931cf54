"""Zero-shot classification as in the ImageBind paper: labels become texts, the input is embedded
in its own modality, and labels are ranked by a softmax over the model's scaled similarities.

logit(label) = s_text · cos(input, prompt(label)), where s_text is the learned text logit scale
(reported by our server's /meta as `logitScales.text`; the official model multiplies text
embeddings by it). Cosines are computed from normalised vectors, so the server's output scaling
(unit or official) does not matter. (The official README's example multiplies the raw outputs,
which for audio, depth, thermal and IMU also carry that modality's own fixed scale: ×20, ×5, ×10,
×5; that sharpens the softmax without changing the ranking.)

Default prompt templates, per input kind (`{label}` is replaced; labels read best with their
article, e.g. "a dog", "rain"; override with `template=`):
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.errors import QueryError
from imagebind_vectorizer.weaviate.search import QueryInput
from imagebind_vectorizer.weaviate.vectorizer import VectorizerClient

DEFAULT_TEMPLATES: dict[InputKind, str] = {kind: kind.facts.zero_shot_template for kind in InputKind}
#: used when the server does not report its text scale (the official model's clamp value)
FALLBACK_TEXT_SCALE = 100.0

__doc__ += "\n".join(f"    {kind.value:8} {template!r}" for kind, template in DEFAULT_TEMPLATES.items()) + "\n"


@dataclass(frozen=True)
class LabelScore:
    label: str
    prompt: str
    probability: float
    similarity: float  # cosine


def text_scale(server: VectorizerClient) -> float:
    scales = server.meta().get("logitScales") or {}
    value = scales.get("text")
    return float(value) if isinstance(value, (int, float)) and value > 0 else FALLBACK_TEXT_SCALE


def parse_labels(text: str | Sequence[str]) -> list[str]:
    labels = [label.strip() for label in (text.split(",") if isinstance(text, str) else text) if label.strip()]
    if len(labels) < 2:
        raise QueryError("give at least two labels, separated by commas")
    if len(set(labels)) != len(labels):
        raise QueryError("labels must be different")
    return labels


def classify(server: VectorizerClient, item: QueryInput, labels: Sequence[str], *,
             template: str | None = None) -> list[LabelScore]:
    """Labels with probabilities, most likely first."""
    labels = parse_labels(labels)
    template = template or DEFAULT_TEMPLATES[item.kind]
    if "{label}" not in template:
        raise QueryError("the template must contain {label}, e.g. 'a photo of {label}.'")
    prompts = [template.replace("{label}", label) for label in labels]
    request: dict[InputKind, list[bytes | str]] = {InputKind.TEXT: list(prompts)}
    if item.kind is InputKind.TEXT:
        request[InputKind.TEXT] = [*prompts, item.data()]
    else:
        request[item.kind] = [item.data()]
    vectors = server.vectorize(request)
    texts = vectors[InputKind.TEXT][:len(labels)]
    query = vectors[item.kind][-1]
    texts = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    query = query / np.linalg.norm(query)
    cosines = texts @ query
    logits = text_scale(server) * cosines.astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    ranked = sorted(zip(labels, prompts, probs, cosines, strict=True), key=lambda x: -x[2])
    return [LabelScore(label, prompt, float(p), float(c)) for label, prompt, p, c in ranked]


def format_scores(scores: Sequence[LabelScore]) -> str:
    width = max(len(s.label) for s in scores)
    return "\n".join(f"  {s.label.ljust(width)}  {s.probability:7.2%}  cos {s.similarity:+.4f}  ({s.prompt})"
                     for s in scores)
