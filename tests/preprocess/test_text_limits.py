"""What one text may cost the tokenizer. BPE merges one pair at a time over a whole word, so its time
grows with the square of the word's length: a 20,000-letter word took a minute, under a lock every
other text waited on. Words over a length and texts over a budget of merge steps are refused with
400 too_complex; tokenizing can be abandoned between words; no lock is held while tokenizing. For
every text it accepts, the tokens stay exactly the official tokenizer's."""

from __future__ import annotations

import random
import string
import threading

import pytest

from imagebind_vectorizer.errors import DeadlineExceededError, InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import Limits, PreprocessOptions, preprocess
from imagebind_vectorizer.preprocess.text import Tokenizer, get_tokenizer

pytestmark = pytest.mark.timeout(30)  # the old tokenizer took minutes on these inputs: that is a failure

RNG = random.Random(8)


def random_word(length: int, alphabet: str = string.ascii_lowercase) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(length))


def refused(text: str, limits: Limits | None = None) -> InputError:
    with pytest.raises(InputError) as info:
        preprocess(InputKind.TEXT, text, PreprocessOptions(limits=limits or Limits()))
    assert info.value.reason == "too_complex"
    return info.value


@pytest.mark.parametrize("length", [20_000, 100_000])
def test_a_very_long_word_is_refused_at_once(length: int) -> None:
    """Issue cases: 20,000 letters took ~60 s, 100,000 letters over 11 minutes."""
    error = refused(random_word(length))
    assert f"word of {length} bytes" in error.message and "4096" in error.message


def test_a_text_over_its_merge_budget_is_refused() -> None:
    """A word under the length limit whose random letters need hundreds of thousands of merge steps."""
    error = refused(random_word(4000))
    assert "max_text_bpe_work" in error.message


def test_the_limits_are_settings() -> None:
    refused("hello " + "a" * 101, Limits(max_text_word_bytes=100))
    refused(random_word(300), Limits(max_text_bpe_work=1000))
    assert preprocess(InputKind.TEXT, random_word(4000),
                      PreprocessOptions(limits=Limits(max_text_bpe_work=10**9))).shape == (1, 77)


def parity_texts() -> list[str]:
    """Ordinary and odd texts, and the costliest words the defaults accept."""
    alphabets = [string.ascii_letters, "абвгдежзийклмнопрстуфхцчшщыэюя", "日本語中文漢字かなカナ", string.punctuation,
                 string.ascii_lowercase + "éèêàçœ", "0123456789"]
    texts = ["x" * 2000, "ab" * 2000, random_word(1500), " ".join(random_word(60) for _ in range(100)),
             "<|startoftext|> hello <|endoftext|> world <start_of_text> <end_of_text>",
             "It's 3.14 o'clock, isn't it?! " * 10]
    for alphabet in alphabets:
        for _ in range(8):
            words = [random_word(RNG.randint(1, 40), alphabet) for _ in range(RNG.randint(1, 60))]
            texts.append(" ".join(words))
    return texts


@pytest.mark.reference
def test_accepted_texts_tokenize_exactly_as_the_official_tokenizer(ref) -> None:
    official = ref.data.SimpleTokenizer(bpe_path=ref.data.return_bpe_path())
    ours = Tokenizer()
    for text in parity_texts():
        assert ours.bpe_ids(text, 75) == official.encode(text)[:75], text[:80]


def test_tokenizing_is_abandoned_between_words_when_the_request_is_gone() -> None:
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) >= 3

    with pytest.raises(DeadlineExceededError):
        preprocess(InputKind.TEXT, "one two three four five six", PreprocessOptions(), stop=stop)
    assert len(asked) == 3


def test_no_lock_is_held_while_a_text_is_tokenized() -> None:
    """One thread is stopped in the middle of a text; another tokenizes meanwhile. (The old
    tokenizer held a process-wide lock for the whole text.)"""
    tokenizer = get_tokenizer()
    inside, release = threading.Event(), threading.Event()

    def parked() -> bool:
        inside.set()
        release.wait(20)
        return False

    slow = threading.Thread(target=tokenizer.bpe_ids, args=("first second third", 77), kwargs={"stop": parked})
    slow.start()
    try:
        assert inside.wait(10)
        other: list[list[int]] = []
        quick = threading.Thread(target=lambda: other.append(tokenizer.bpe_ids("a dog on a sofa", 77)))
        quick.start()
        quick.join(10)
        assert other and len(other[0]) == 5, "a second text waited for the first"
    finally:
        release.set()
        slow.join(10)


def test_each_thread_bounds_its_word_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    import imagebind_vectorizer.preprocess.text as text_module

    monkeypatch.setattr(text_module, "_CACHE_LIMIT", 50)
    tokenizer = Tokenizer()
    for index in range(30):
        tokenizer.bpe_ids(" ".join(random_word(8) for _ in range(10)), 77)
        assert len(tokenizer._cache()) <= 50 + 12, index
