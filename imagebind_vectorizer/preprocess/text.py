"""Text -> (1, 77) token ids with open_clip's CLIP BPE tokenizer (the same vocabulary and cleaning
as ImageBind's).

Layouts: official = [SOT] + first 75 BPE ids + [EOT], zero padded; legacy (Weaviate's container and
the official code before 2025-11-21) appends EOT *before* truncating to 77, so a text of more than
75 BPE tokens has no EOT and every such text embeds identically."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType

import torch

from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import TEXT_CONTEXT_LENGTH
from imagebind_vectorizer.preprocess.profiles import PreprocessOptions

_BPE_CACHE_LIMIT = 200_000  # open_clip caches every word it has seen; a server must bound that


def open_clip_tokenizer_module() -> ModuleType:
    """open_clip's tokenizer module. Importing the `open_clip` package pulls in torchvision, timm and
    the model zoo (~230 MB of resident memory in a server that needs none of it); the tokenizer
    module imports only ftfy, regex, numpy and torch, so load that one file on its own."""
    if "open_clip.tokenizer" in sys.modules:
        return sys.modules["open_clip.tokenizer"]
    try:
        package = importlib.util.find_spec("open_clip")
        assert package is not None and package.submodule_search_locations
        path = Path(next(iter(package.submodule_search_locations))) / "tokenizer.py"
        spec = importlib.util.spec_from_file_location("imagebind_vectorizer._open_clip_tokenizer", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    except Exception:  # a future open_clip layout: fall back to the ordinary import
        import open_clip.tokenizer

        return open_clip.tokenizer


class Tokenizer:
    def __init__(self) -> None:
        self._bpe = open_clip_tokenizer_module().SimpleTokenizer(context_length=TEXT_CONTEXT_LENGTH)
        self._initial_cache = dict(self._bpe.cache)
        self._lock = threading.Lock()
        self.sot = self._bpe.sot_token_id
        self.eot = self._bpe.eot_token_id

    def bpe_ids(self, text: str, limit: int) -> list[int]:
        """The first `limit` BPE ids of `text`. Cleaning runs on the whole text (it is global), but
        BPE stops once enough words are merged, so a long document costs no more than its start."""
        bpe = self._bpe
        cleaned = bpe.clean_fn(text)
        ids: list[int] = []
        with self._lock:  # the BPE word cache is a plain dict shared across threads
            if len(bpe.cache) > _BPE_CACHE_LIMIT:
                bpe.cache = dict(self._initial_cache)
            for word in bpe.pat.finditer(cleaned):
                piece = "".join(bpe.byte_encoder[b] for b in word.group().encode("utf-8"))
                ids.extend(bpe.encoder[t] for t in bpe.bpe(piece).split(" "))
                if len(ids) >= limit:
                    break
        return ids[:limit]

    def __call__(self, text: str, keep_eot: bool = True) -> torch.Tensor:
        ids = self.bpe_ids(text, TEXT_CONTEXT_LENGTH)
        tokens = [self.sot, *ids]
        if keep_eot:
            tokens = [*tokens[: TEXT_CONTEXT_LENGTH - 1], self.eot]
        else:
            tokens = [*tokens, self.eot][:TEXT_CONTEXT_LENGTH]
        out = torch.zeros(TEXT_CONTEXT_LENGTH, dtype=torch.long)
        out[: len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return out


_tokenizer: Tokenizer | None = None
_tokenizer_lock = threading.Lock()


def get_tokenizer() -> Tokenizer:
    """One tokenizer per process (the container rebuilt it on every request)."""
    global _tokenizer
    with _tokenizer_lock:
        if _tokenizer is None:
            _tokenizer = Tokenizer()
        return _tokenizer


def preprocess_text(text: str | bytes, options: PreprocessOptions) -> torch.Tensor:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"text is not valid UTF-8: {exc}", reason="decode") from exc
    if not isinstance(text, str):
        raise InputError("text must be a string", reason="invalid")
    if len(text) > options.limits.max_text_chars:
        raise InputError(f"text has {len(text)} characters, over the limit of "
                         f"{options.limits.max_text_chars}", reason="too_large")
    return get_tokenizer()(text, keep_eot=options.behaviour.text_keeps_eot)[None]
