"""Text: our tokenizer against the official `load_and_transform_text`, and the legacy profile's
EOT-less truncation of long texts (the container's documented bug)."""

from __future__ import annotations

import pytest
import torch

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import PreprocessOptions, Profile, preprocess
from tests.helpers import assert_tensors_match, assert_vectors_match, legacy_text_tokens, reference_embed

EOT = 49407
OFFICIAL = PreprocessOptions()
LEGACY = PreprocessOptions(profile=Profile.WEAVIATE_LEGACY)
#: vectors vs the reference model on the reference tokens (element difference per vector norm, and
#: norm ratio). Measured at most 1.4e-7 (the trunk cut at the last end-of-text token against all 77
#: positions); 1e-5 as for every model comparison.
VECTOR_RTOL = 1e-5

SHORT_TEXTS = {
    "plain": "A dog.",
    "empty": "",
    "html-entities": "caf&eacute; &amp;amp; &lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot; &#x1F600;",
    "accents": "Crème brûlée à la française, naïve façade, Ångström",
    "emoji": "🐶🐱 pets ❤️ 👩‍👩‍👧 🇫🇷",
    "whitespace-runs": "  a   \t\n  b\u00a0\u2003c \r\n\r\n d  ",
    "control-characters": "tab\tbell\x07 sep\x1c\x1d\x1e\x1f end\x00",
    "cjk": "日本語のテキストと中文文本",
    "mixed-case": "MiXeD CaSe WORDS And Numbers 1234567890 3.14",
    "contractions": "it's, don't, we'll, they're, I'd, you've, I'm",
    "mojibake": "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.",
    "punctuation": "!!!??? ... --- *** ((( ))) [[[ ]]] {{{ }}} @@@ ###",
    "seventy-five-tokens": " ".join(["dog"] * 75),  # exactly fills [SOT] + 75 + [EOT]
}
LONG_TEXTS = {
    "seventy-six-tokens": " ".join(["dog"] * 76),
    "hundred-words": " ".join(f"word{i}" for i in range(100)),
    "hundred-other-words": " ".join(f"thing{i}" for i in range(100)),
    "repeated-letter": "x" * 2000,
    "long-sentence": "The quick brown fox jumps over the lazy dog. " * 20,
}
ALL_TEXTS = {**SHORT_TEXTS, **LONG_TEXTS}


def bpe_count(ref, text: str) -> int:
    tokenizer = ref.data.SimpleTokenizer(bpe_path=ref.data.return_bpe_path())
    return len(tokenizer.encode(text))


@pytest.mark.reference
def test_the_test_texts_are_short_and_long_where_intended(ref) -> None:
    assert all(bpe_count(ref, t) <= 75 for t in SHORT_TEXTS.values())
    assert all(bpe_count(ref, t) > 75 for t in LONG_TEXTS.values())
    assert bpe_count(ref, SHORT_TEXTS["seventy-five-tokens"]) == 75


@pytest.mark.reference
def test_official_tokens_equal_the_reference(ref) -> None:
    names = list(ALL_TEXTS)
    reference = ref.data.load_and_transform_text([ALL_TEXTS[n] for n in names], "cpu")
    for row, name in enumerate(names):
        ours = preprocess(InputKind.TEXT, ALL_TEXTS[name], OFFICIAL)
        assert ours.shape == (1, 77) and ours.dtype == torch.long
        assert torch.equal(ours[0], reference[row]), f"{name}: {ours[0, :12].tolist()} vs {reference[row, :12]}"
        assert EOT in ours[0], name  # the official layout always keeps EOT
    # bytes are UTF-8 text
    assert torch.equal(preprocess(InputKind.TEXT, ALL_TEXTS["emoji"].encode(), OFFICIAL),
                       preprocess(InputKind.TEXT, ALL_TEXTS["emoji"], OFFICIAL))


@pytest.mark.reference
def test_official_vectors_equal_the_reference(ref, ref_tiny_model, make_embedder) -> None:
    texts = list(ALL_TEXTS.values())
    ours = make_embedder(output_scaling="official").embed("text", texts)
    reference = reference_embed(ref_tiny_model, "text", ref.data.load_and_transform_text(texts, "cpu"))
    assert_vectors_match(ours, reference, label="vectors text official", rtol=VECTOR_RTOL)


@pytest.mark.reference
def test_legacy_tokens_follow_the_old_truncation(ref) -> None:
    for name, text in ALL_TEXTS.items():
        ours = preprocess(InputKind.TEXT, text, LEGACY)[0]
        assert_tensors_match(ours, legacy_text_tokens(ref, text), label="tensor text legacy", what=name)
        if name in SHORT_TEXTS:
            assert torch.equal(ours, preprocess(InputKind.TEXT, text, OFFICIAL)[0]), name
        else:
            assert EOT not in ours, f"{name}: a text over 75 BPE tokens loses its EOT in the legacy profile"


@pytest.mark.reference
def test_legacy_long_texts_all_embed_identically(ref, ref_tiny_model, make_embedder) -> None:
    legacy = make_embedder(output_scaling="official", preprocessing="weaviate-legacy")
    official = make_embedder(output_scaling="official")
    long_texts = [LONG_TEXTS["hundred-words"], LONG_TEXTS["hundred-other-words"], LONG_TEXTS["long-sentence"]]
    vectors = legacy.embed("text", long_texts)
    assert (vectors[0] == vectors[1]).all() and (vectors[1] == vectors[2]).all()
    reference = reference_embed(ref_tiny_model, "text", torch.stack([legacy_text_tokens(ref, t) for t in long_texts]))
    assert_vectors_match(vectors, reference, label="vectors text legacy", rtol=VECTOR_RTOL)
    # The official profile tells them apart, and short texts embed the same in both profiles.
    distinct = official.embed("text", long_texts)
    assert not (distinct[0] == distinct[1]).all()
    short = list(SHORT_TEXTS.values())
    assert (legacy.embed("text", short) == official.embed("text", short)).all()
