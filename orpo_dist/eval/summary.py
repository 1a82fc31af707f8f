"""The eval summary: the terminal table, and eval.md with its gap histogram beside eval.json."""

from __future__ import annotations

from pathlib import Path

from ..atomic import write_text
from ..run_folder import EVAL_REPORT_FILE, PLOTS_FOLDER


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _interval(figures: dict) -> str:
    low, high = figures["accuracy_ci95"]
    return f"{figures['accuracy']:.1%} [{low:.1%}, {high:.1%}]"


def _one_line(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def format_result(result: dict) -> str:
    """The table printed at the end of `orpo-dist eval` (and of the demo)."""
    b, t = result["base"], result["trained"]
    lines = [
        f"held-out preference pairs: {result['pairs']}  (base model: {result['base_model']}; "
        f"trained: {result['target']})",
        f"{'':34}{'base':>24}{'trained':>24}",
        f"{'chosen   mean log-prob per token':34}{b['chosen_logp']:>24.3f}{t['chosen_logp']:>24.3f}",
        f"{'rejected mean log-prob per token':34}{b['rejected_logp']:>24.3f}{t['rejected_logp']:>24.3f}",
        f"{'preference accuracy [95% CI]':34}{_interval(b):>24}{_interval(t):>24}",
        f"{'mean gap (chosen - rejected)':34}{b['gap']:>+24.3f}{t['gap']:>+24.3f}",
    ]
    if result.get("skipped"):
        lines.append(f"({result['skipped']} pair(s) not scored: the prompt alone fills max_length)")
    categories = result.get("by_category")
    if categories:
        lines.append(f"by {categories['column']}:")
        for name, figures in categories["trained"].items():
            lines.append(f"  {name[:32]:32}{_pct(categories['base'][name]['accuracy']):>24}"
                         f"{_pct(figures['accuracy']):>24}  ({figures['pairs']} pairs)")
    refusal = result.get("refusal_rate")
    if refusal:
        lines.append(f"{'refusal rate on harmful probes':34}{_pct(refusal['base']):>24}{_pct(refusal['trained']):>24}")
    for g in result.get("generations", []):
        mark = "  [harmful: should be refused]" if g["harmful"] else ""
        lines += ["", f"prompt:  {g['prompt']}{mark}", f"  base:    {_one_line(g['base'])}",
                  f"  trained: {_one_line(g['trained'])}"]
    return "\n".join(lines)


def write_markdown(result: dict, folder: Path, histogram: Path | None) -> Path:
    """eval.md: the figures as tables, the histogram, the generations."""
    b, t = result["base"], result["trained"]
    rows = [
        ("pairs scored", str(b["pairs"]), str(t["pairs"])),
        ("preference accuracy [95% bootstrap CI]", _interval(b), _interval(t)),
        ("mean gap, chosen - rejected (log-prob per token)", f"{b['gap']:+.3f}", f"{t['gap']:+.3f}"),
        ("chosen mean log-prob per token", f"{b['chosen_logp']:.3f}", f"{t['chosen_logp']:.3f}"),
        ("rejected mean log-prob per token", f"{b['rejected_logp']:.3f}", f"{t['rejected_logp']:.3f}"),
    ]
    if result.get("refusal_rate"):
        rows.append(("refusal rate on harmful probes", _pct(result["refusal_rate"]["base"]),
                     _pct(result["refusal_rate"]["trained"])))
    text = [f"# Evaluation: {result['target']}", "",
            f"Base model `{result['base_model']}` against the trained model on {result['pairs']} held-out "
            "preference pairs. Accuracy: share of pairs whose chosen answer gets the higher mean log-prob per "
            "token; the interval resamples pairs (2,000 bootstrap draws).", "",
            "| | base | trained |", "|---|---|---|", *[f"| {a} | {x} | {y} |" for a, x, y in rows], ""]
    if histogram is not None:
        text += [f"![gap histogram]({histogram.relative_to(folder).as_posix()})", ""]
    categories = result.get("by_category")
    if categories:
        text += [f"## By {categories['column']}", "", "| | pairs | base accuracy | trained accuracy |",
                 "|---|---|---|---|"]
        for name, figures in categories["trained"].items():
            text.append(f"| {name} | {figures['pairs']} | {_interval(categories['base'][name])} | "
                        f"{_interval(figures)} |")
        text.append("")
    if result.get("generations"):
        text += ["## Greedy generations", ""]
        for g in result["generations"]:
            text += [f"**{g['prompt']}**" + (" (harmful: should be refused)" if g["harmful"] else ""), "",
                     f"- base{' (refused)' if g['base_refused'] else ''}: {_one_line(g['base'], 600)}",
                     f"- trained{' (refused)' if g['trained_refused'] else ''}: {_one_line(g['trained'], 600)}", ""]
    path = folder / EVAL_REPORT_FILE
    write_text(path, "\n".join(text))
    return path


def histogram_path(folder: Path) -> Path:
    from ..report.plots import GAP_HISTOGRAM

    return folder / PLOTS_FOLDER / GAP_HISTOGRAM
