"""Progress on a terminal versus in a log (make data without input: test_kaggle_download.py)."""

import io
import sys

from tqdm import tqdm

from training.common.progress import LogProgress, progress


def test_a_log_gets_a_few_summary_lines_not_a_bar(monkeypatch):
    stream = io.StringIO()  # not a terminal, like CI or nohup
    monkeypatch.setattr(sys, "stderr", stream)
    with progress(1000, "upload", unit="files") as bar:
        assert isinstance(bar, LogProgress)
        for _ in range(1000):
            bar.update(1)
        bar.set_postfix_str("1000/1000 files")
    lines = stream.getvalue().splitlines()
    assert [line.split(":")[1].split()[0] for line in lines] == ["25%", "50%", "75%", "done"]
    assert lines[-1].startswith("upload: done 1000 files/1000 files, 1000/1000 files in ")


def test_a_terminal_gets_a_tqdm_bar(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    with progress(10, "check") as bar:
        assert isinstance(bar, tqdm)


def test_a_step_past_several_quarters_is_one_line_and_the_end_is_said_once(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with progress(40, "predict", unit="img") as bar:
        bar.update(25)  # one batch past 25% and 50%: one line, at what it reached
        bar.update(15)  # the end: said by close
    lines = stream.getvalue().splitlines()
    assert [line.split(":")[1].split()[0] for line in lines] == ["50%", "done"], lines
    assert lines[0].startswith("predict: 50% 25 img/40 img")
