"""Where the workstation keeps what runs produce: one folder per run (``runs/<job>``), the MLflow
store that records them all, and the benchmarks. Commands take ``--runs`` for the run folders;
the MLflow store stays the project's, so ``make ui`` shows every run wherever its files went."""

from pathlib import Path

RUNS_DIR = Path("runs")
