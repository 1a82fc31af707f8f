"""The training report: curves from metrics.jsonl drawn into RUN/plots/, as the run ends and
whenever `orpo-dist report RUN` asks (also while the run is still writing)."""

from __future__ import annotations

from pathlib import Path

from ..run_folder import PLOTS_FOLDER, read_metrics


def draw_training_plots(run_dir: str | Path) -> list[Path]:
    """PNG curves of every ORPO metric the run has logged so far; [] before the first log."""
    from .plots import training_plots

    run_dir = Path(run_dir)
    records = [r for r in read_metrics(run_dir) if "train_runtime" not in r]  # the summary is not a step
    if not records:
        return []
    return training_plots(records, run_dir / PLOTS_FOLDER)


def plots_markdown(run_dir: Path, plots: list[Path]) -> str:
    """Markdown image links to the plots, relative to the run folder (for the model card)."""
    return "\n".join(f"![{p.stem}]({p.relative_to(run_dir).as_posix()})" for p in plots)
