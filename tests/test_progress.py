"""Progress is drawn only on a terminal and never with --no-progress; a wait shows its elapsed time and
leaves no trace on the line when it ends."""

from __future__ import annotations

import argparse
import io
import time

from imagebind_vectorizer import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal_and_not_with_no_progress() -> None:
    parser = argparse.ArgumentParser()
    progress.add_flag(parser)
    assert progress.enabled(parser.parse_args([]), Terminal())
    assert not progress.enabled(parser.parse_args(["--no-progress"]), Terminal())
    assert not progress.enabled(parser.parse_args([]), io.StringIO())  # a pipe or a log file


def test_waiting_shows_the_elapsed_time_then_erases_its_line() -> None:
    screen = Terminal()
    with progress.waiting("searching Media", show=True, stream=screen, interval=0.05):
        time.sleep(1.2)
    drawn = screen.getvalue()
    assert "searching Media 0 s" in drawn and "searching Media 1 s" in drawn
    assert drawn.endswith("\r\033[K")  # the cursor is back at the start of an empty line


def test_waiting_draws_nothing_when_hidden() -> None:
    screen = Terminal()
    with progress.waiting("searching", show=False, stream=screen):
        pass
    assert screen.getvalue() == ""


def test_a_ticking_bar_moves_its_elapsed_time_during_one_long_step() -> None:
    screen = Terminal()
    with progress.bar(3, "ingest", unit="obj", file=screen) as shown, progress.ticking(shown, interval=0.05):
        time.sleep(1.2)  # one batch that Weaviate takes a while to vectorize
    assert "00:01" in screen.getvalue()
