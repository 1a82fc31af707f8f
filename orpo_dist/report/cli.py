"""`orpo-dist report RUN`: redraw a run's training curves (RUN/plots/*.png) from its metrics.jsonl.

Works on a finished run and on one still training (it reads what has been logged so far); the
run's model card links the same files. Evaluation pictures come with `orpo-dist eval`.
"""

from __future__ import annotations

import argparse

from ..errors import UserError
from ..run_folder import METRICS_FILE, require_run_folder


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orpo-dist report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="output folder of an orpo-dist run")
    args = parser.parse_args(argv)
    run_dir = require_run_folder(args.run_dir)
    from .training import draw_training_plots

    try:
        plots = draw_training_plots(run_dir)
    except ValueError as err:  # a broken metrics line that is not the last one
        raise UserError(f"{err}: the run's metrics file is damaged") from None
    if not plots:
        print(f"orpo-dist report: {run_dir / METRICS_FILE} has no logged step yet; nothing to draw")
        return 0
    for path in plots:
        print(f"  {path}")
    print(f"orpo-dist report: {len(plots)} plot(s) drawn from {run_dir / METRICS_FILE}")
    return 0
