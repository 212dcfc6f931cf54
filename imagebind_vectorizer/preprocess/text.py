"""Text -> (1, 77) token ids with open_clip's CLIP BPE tokenizer (the same vocabulary and cleaning
as ImageBind's).

Layouts: official = [SOT] + first 75 BPE ids + [EOT], zero padded; legacy (Weaviate's container and
the official code before 2025-11-21) appends EOT *before* truncating to 77, so a text of more than
75 BPE tokens has no EOT and every such text embeds identically."""

from __future__ import annotations

import importlib.util
import itertools
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

from imagebind_vectorizer.errors import DeadlineExceededError, InputError
from imagebind_vectorizer.kinds import TEXT_CONTEXT_LENGTH
from imagebind_vectorizer.preprocess.profiles import Limits, PreprocessOptions

_DEFAULT_LIMITS = Limits()
_UNRANKED = float("inf")

_CACHE_LIMIT = 20_000  # words remembered per thread; a server must bound what it keeps


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
    """CLIP's byte-level BPE with open_clip's vocabulary, cleaning and pre-tokenizer, and a merge loop
    of our own that counts its work. BPE merges one pair at a time over the whole word, so a word of
    n bytes can take n merges of n steps: a 20,000-letter word took a minute. Here each text has a
    budget of merge steps and a longest word (`Limits`), and tokenizing can be abandoned between
    words when its request is gone. Each thread keeps its own word cache: no lock is held anywhere."""

    def __init__(self) -> None:
        module = open_clip_tokenizer_module()
        vocabulary = module.SimpleTokenizer(context_length=TEXT_CONTEXT_LENGTH)
        self._clean = vocabulary.clean_fn
        self._byte_symbol = vocabulary.byte_encoder
        self._ids = vocabulary.encoder
        self._ranks = vocabulary.bpe_ranks
        self._local = threading.local()
        self.sot = vocabulary.sot_token_id
        self.eot = vocabulary.eot_token_id
        # CLIP's pre-tokenizer with ImageBind's spelling of the special tokens (open_clip spells them
        # <start_of_text>, which the official tokenizer reads as plain text). `module.re` is the
        # `regex` package open_clip uses (\p{L} needs it).
        self._special = {"<|startoftext|>": self.sot, "<|endoftext|>": self.eot}
        self._pattern = module.re.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            module.re.IGNORECASE)

    def bpe_ids(self, text: str, limit: int, limits: Limits = _DEFAULT_LIMITS,
                stop: Callable[[], bool] | None = None) -> list[int]:
        """The first `limit` BPE ids of `text`. Cleaning runs on the whole text (it is global), but
        BPE stops once enough words are merged, so a long document costs no more than its start."""
        cache = self._cache()
        ids: list[int] = []
        work = 0
        for match in self._pattern.finditer(self._clean(text)):
            if stop is not None and stop():
                raise DeadlineExceededError("tokenizing abandoned: the request is gone")
            special = self._special.get(match.group())
            if special is not None:
                ids.append(special)
                if len(ids) >= limit:
                    break
                continue
            raw = match.group().encode("utf-8")
            if len(raw) > limits.max_text_word_bytes:
                raise InputError(f"text has a word of {len(raw)} bytes ({match.group()[:12]!r}...); words over "
                                 f"{limits.max_text_word_bytes} bytes are refused", reason="too_complex")
            piece = "".join(self._byte_symbol[b] for b in raw)
            merged = cache.get(piece)
            if merged is None:
                merged, cost = self._merge(piece, limits.max_text_bpe_work - work)
                work += cost
                cache[piece] = merged
            ids.extend(self._ids[token] for token in merged.split(" "))
            if len(ids) >= limit:
                break
        return ids[:limit]

    def _merge(self, piece: str, budget: int) -> tuple[str, int]:
        """BPE of one pre-token, as CLIP does it: merge every occurrence of the lowest-ranked adjacent
        pair, left to right, until no pair has a rank. Returns the space-joined tokens and the steps
        it took (the symbols scanned); raises once past `budget`."""
        word = (*piece[:-1], piece[-1] + "</w>")
        ranks = self._ranks
        work = 0
        while len(word) > 1:
            work += len(word)
            if work > budget:
                raise InputError("text is too costly to tokenize: its first words need more BPE merge steps "
                                 "than one text may use (max_text_bpe_work)", reason="too_complex")
            first, second = min(itertools.pairwise(word), key=lambda pair: ranks.get(pair, _UNRANKED))
            if (first, second) not in ranks:
                break
            merged: list[str] = []
            i, end = 0, len(word)
            while i < end:
                try:
                    j = word.index(first, i)
                except ValueError:
                    merged.extend(word[i:])
                    break
                merged.extend(word[i:j])
                if j < end - 1 and word[j + 1] == second:
                    merged.append(first + second)
                    i = j + 2
                else:
                    merged.append(first)
                    i = j + 1
            word = tuple(merged)
        return " ".join(word), work

    def _cache(self) -> dict[str, str]:
        cache = getattr(self._local, "cache", None)
        if cache is None or len(cache) > _CACHE_LIMIT:
            cache = self._local.cache = {}
        return cache

    def __call__(self, text: str, keep_eot: bool = True, limits: Limits = _DEFAULT_LIMITS,
                 stop: Callable[[], bool] | None = None) -> torch.Tensor:
        ids = self.bpe_ids(text, TEXT_CONTEXT_LENGTH, limits, stop)
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


def preprocess_text(text: str | bytes, options: PreprocessOptions,
                    stop: Callable[[], bool] | None = None) -> torch.Tensor:
    """`stop` is asked between words; when it says so, tokenizing is abandoned (DeadlineExceededError)."""
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
    return get_tokenizer()(text, keep_eot=options.behaviour.text_keeps_eot, limits=options.limits, stop=stop)[None]
