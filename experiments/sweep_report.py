"""The report of a sweep: what each trained (or measured) point shows, and the table, CSV and plots of them all.

The report renders from what the task declares (`tasks.base.Task`: `headline`, `table_metrics`,
`baseline_formula`, the solved rule), so a new task, a user's included, needs no edit here. A
run that sweeps learning rates in one program (`--learning_rate=a,b,c`) is reported at its best
rate, chosen on the validation split, with the rate shown. The points come from `experiments.sweep.load_point`.
"""

import csv
import io as _io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from experiments import io
from experiments.config import Config
from experiments.grid import PointKey, Sweep, task_of
from experiments.report import fmt, markdown_table, mean_std
from tasks import Task

PUBLISHED = Path(__file__).resolve().parent.parent / "results" / "published.csv"


# ---------------------------------------------------------------- what a point shows


def best_members(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The seeds a table reports: all of them, or those of the best learning rate of a rate sweep."""
    seeds, best = results["seeds"], results.get("best_learning_rate")
    if len(results.get("learning_rates", [])) > 1 and best is not None:
        return [s for s in seeds if s.get("learning_rate") == best]
    return seeds


def metric_entry(results: dict[str, Any], task: Task) -> str:
    """'mean ± std' of the task's headline metric, its table metrics, the solved fraction (and median step to
    solve), divergences, and the learning rate chosen on the validation split when the run swept several.

    `task` comes from the sweep's own config, never from the names in `results` (reading results runs no code)."""
    seeds = best_members(results)
    parts = [mean_std([s["final"][task.headline] for s in seeds])]
    parts += [f"{_short(k)} {mean_std([s['final'][k] for s in seeds])}" for k in task.table_metrics]
    solved = [s["solved_at_step"] for s in seeds if s["solved"] and s["solved_at_step"] is not None]
    parts.append(f"solved {len(solved)}/{len(seeds)}" + (f" @ {int(np.median(solved))}" if solved else ""))
    diverged = [s["diverged_at_step"] for s in seeds if s["diverged_at_step"] is not None]
    if diverged:
        parts.append(f"**{len(diverged)} diverged** (step {min(diverged)})")
    if len(rates := results.get("learning_rates", [])) > 1:
        parts.append(f"best lr {fmt(results['best_learning_rate'])} of {', '.join(fmt(r) for r in rates)}")
    return "<br>".join(parts)


def _short(key: str) -> str:
    return key.replace("_accuracy", " acc").replace("recall acc", "recall")


def point_entry(point: dict[str, Any], task: Task, first_line: bool = False) -> str:
    """A trained point's `metric_entry`, marked when the point is not finished: another process is
    training it, it stopped before its last step (never shown as if it had finished), or — a point with
    nothing to show, {"busy": why} — it is running, failed or has not started."""
    if "busy" in point:
        return f"- ({point['busy']})"
    results = point["results"]
    entry = metric_entry(results, task)
    entry = entry.split("<br>")[0] if first_line else entry
    steps, done = results["config"]["steps"], results["steps_done"]
    if done < steps and not results.get("finished"):
        entry = f"**part-trained: {done}/{steps} steps**<br>{entry}"
    return entry


def grad_entry(diag: list[dict], point: dict | None = None) -> str:
    """The diagnostics records of one phase of a point; those of the end phase name their step when it is not
    the point's last (--diag_every that does not divide --steps, or changed on resume)."""
    if not diag:
        return "-"
    decay = mean_std([r["carry"]["decay_rate"] for r in diag], 2)
    horizon = mean_std([r["carry"]["horizon"] for r in diag], 2)
    step, done = diag[0]["step"], (point or {}).get("results", {}).get("steps_done")
    at = f" (at step {step})" if step and done is not None and done != step else ""
    return f"{decay} dec/step, horizon {horizon}{at}"


# ---------------------------------------------------------------- the report


def published_rows(task: str) -> list[dict[str, str]]:
    with open(PUBLISHED, newline="") as f:
        return [r for r in csv.DictReader(f) if r["task"] == task]


def matches(row: dict[str, str], cell: str, seq_len: int) -> bool:
    low, high = int(row["seq_len_min"]), int(row["seq_len_max"] or 10**9)
    return row["cell"] == cell and low <= seq_len <= high


def _span(low: str, high: str) -> str:
    if not high:
        return f"≥{low}"
    return low if low == high else (f"≤{high}" if low == "1" else f"{low}–{high}")


def headline_label(task: Task) -> str:
    """What the table's first line per point is: e.g. "CE / baseline (10 ln 8 / (T + 20))", "MSE (baseline 1/6)"."""
    formula = task.baseline_formula or fmt(task.baseline)
    if task.headline == "ratio":
        return f"{task.metric_name} / memoryless baseline ({formula})"
    return f"{task.metric_name} (memoryless baseline {formula} = {fmt(task.baseline)})"


def render(
    table: str, sweep: Sweep, configs: dict[PointKey, Config], points: dict[PointKey, dict], command: str, wall: float
) -> str:
    """The Markdown report of one sweep: final metrics, gradient decay, the published figures beside ours."""
    import jax

    from experiments.results import package_versions

    keys = list(points)
    rows = list(dict.fromkeys(k.row for k in keys))
    lens = list(dict.fromkeys(k.seq_len for k in keys))
    first = configs[keys[0]]
    task = task_of(first)
    cols = [f"T={T}" for T in lens]
    if sweep.measure == "gradients":
        settings = f"task {sweep.task}, diagnostics batch 32, at initialisation; {sweep.describe()}"
    else:
        held_out = jax.eval_shape(lambda: task.held_out("test", first.eval_size))[0].shape[0]
        settings = f"{sweep.describe()}; every seed evaluated on {held_out} held-out test sequences"
    out = [
        f"# `{table}` table",
        "",
        f"Command: `{command}`  ",
        *_provenance(points, wall, package_versions()),
        f"Settings: {settings}.",
        "",
    ]
    if sweep.measure != "gradients":
        extra = "".join(f", then {k}" for k in task.table_metrics)
        out += [
            f"## Final held-out {headline_label(task)}{extra}, mean ± std over seeds",
            "",
            f"Task `{sweep.task}`{_options(first)}; solved: {task.solved_rule}.",
            "",
        ]
        table_rows = [
            [r, *(point_entry(points[PointKey(r, T)], task_of(configs[PointKey(r, T)])) for T in lens)] for r in rows
        ]
        out += [markdown_table(["cell", *cols], table_rows), ""]
        out += _memoryless_line(first, lens)
    if any(p.get("diag_init") or p.get("diag_end") for p in points.values()):
        out += ["## Gradient decay of ||dL/dh_t|| (fitted decades per step; horizon in steps, 1% of max)", ""]
        phases = [("init", "diag_init")] + ([("end", "diag_end")] if sweep.measure != "gradients" else [])
        grad_rows = [
            [r, phase, *(grad_entry(_reported(p, key), p) for p in (points[PointKey(r, T)] for T in lens))]
            for r in rows
            for phase, key in phases
        ]
        out += [markdown_table(["cell", "when", *cols], grad_rows), ""]
    cells = {k: configs[k].cell for k in keys}
    published = [r for r in published_rows(sweep.task) if r["cell"] in cells.values()]
    published = published if sweep.measure != "gradients" else []
    if published:
        out += ["## Published, beside ours", ""]
        pub_rows = []
        for r in published:
            ours = [
                f"T={k.seq_len}: " + point_entry(points[k], task_of(configs[k]), first_line=True).replace("<br>", " ")
                for k in keys
                if matches(r, cells[k], k.seq_len)
            ]
            span = _span(r["seq_len_min"], r["seq_len_max"])
            result = " ".join(x for x in (r["metric"] + " " + r["value"] if r["value"] else "", r["outcome"]) if x)
            pub_rows.append(
                [f"{r['source']}, {r['where']}", r["cell"], span, result, r["setting"], "; ".join(ours) or "-"]
            )
        out += [markdown_table(["source", "cell", "T", "published", "their setting", "ours"], pub_rows), ""]
    return "\n".join(out)


def _memoryless_line(config: Config, lens: list[int]) -> list[str]:
    """What the task's memoryless predictor scores on the held-out test set the table reports, per T: a finite
    set's own baseline differs from the analytic one (adding, 500 sequences at T=1000: 0.1585, not 1/6), so a
    ratio near 1 there is no progress. [] for a task without a memoryless predictor (`Task.memoryless_outputs`)."""
    import jax.numpy as jnp

    scores = []
    for T in lens:
        task = task_of(config.replace(seq_len=T))
        inputs, targets = task.held_out("test", config.eval_size)
        outputs = task.memoryless_outputs(inputs)
        if outputs is None:
            return []
        scores.append(f"T={T} {float(jnp.mean(task.per_example_loss(outputs, targets))):.4g}")
    return [f"The memoryless predictor on this held-out test set: {', '.join(scores)} ({task.metric_name}).", ""]


def _of_reported(results: dict[str, Any], records: list[dict]) -> list[dict]:
    """The records (metrics or diagnostics, one per member) of the members the table reports (`best_members`)."""
    members = {(s["seed"], s.get("learning_rate")) for s in best_members(results)}
    return [r for r in records if (r["seed"], r.get("learning_rate")) in members]


def _reported(point: dict, phase: str) -> list[dict]:
    """The diagnostics records of `phase` for the members the table reports."""
    records = point.get(phase, [])
    return (_of_reported(point["results"], records) or records) if "results" in point else records


def _options(config: Config) -> str:
    return f" ({config.task_options})" if config.task_options else ""


def _provenance(points: dict[PointKey, dict], wall: float, versions: dict[str, str]) -> list[str]:
    """The header's "Wall time:" and "Versions:" lines, from each point's results.json: a table may hold points
    trained on several machines (say the long ones on a lent GPU), each then named with its points. Without
    any results: this process's machine, `wall` and `versions`."""
    import jax

    machines: dict[str, dict[str, Any]] = {}
    for key, p in points.items():
        if "results" not in p:
            continue
        r = p["results"]
        ex = r.get("execution", {})
        whole = {"wall_time_s": r["wall_time_s"], "versions": r.get("versions", {}), **ex}
        for session in r.get("sessions") or [whole]:  # results before the sessions list: the last machine's
            name = _machine_name(session.get("backend"), session.get("device_kind"), session.get("cpu_count"))
            m = machines.setdefault(name, {"wall": 0.0, "at": [], "versions": []})
            m["wall"] += session.get("wall_time_s") or 0.0
            if (at := f"{key.row} T={key.seq_len}") not in m["at"]:
                m["at"].append(at)
            if (v := _versions(session.get("versions") or {}, order=list(versions))) not in m["versions"]:
                m["versions"].append(v)
    if not machines:
        here = f"{os.cpu_count()} CPU cores ({jax.devices()[0].platform})"
        return [f"Wall time: {wall / 60:.1f} min on {here}  ", f"Versions: {_versions(versions)}  "]
    if len(machines) == 1:
        ((name, m),) = machines.items()
        return [f"Wall time: {m['wall'] / 60:.1f} min on {name}  ", f"Versions: {' / '.join(m['versions'])}  "]
    total = sum(m["wall"] for m in machines.values())
    each = "; ".join(f"{m['wall'] / 60:.1f} min on {name} for {', '.join(m['at'])}" for name, m in machines.items())
    return [
        f"Wall time: {total / 60:.1f} min in all: {each}  ",
        "Versions: " + "; ".join(f"{name}: {' / '.join(m['versions'])}" for name, m in machines.items()) + "  ",
    ]


def _machine_name(backend: str | None, kind: str | None, cores: int | None) -> str:
    if backend is None:
        return "a machine not recorded"
    if backend == "cpu":
        return f"{cores} CPU cores (cpu)" if cores else "cpu"
    return backend if kind in (backend, None) else f"{backend} ({kind})"


def _versions(versions: dict[str, str], order: list[str] | None = None) -> str:
    """ "python 3.11.7, jax 0.10.2, ...": the packages in `order` first, in that order (results.json sorts them)."""
    order = order or []

    def rank(name: str) -> int:
        return order.index(name) if name in order else len(order)

    return ", ".join(f"{k} {versions[k]}" for k in sorted(versions, key=rank))


def write_csv(path: Path, table: str, points: dict[PointKey, dict]) -> None:
    """One row per seed (and learning rate) of every point that has something to show."""
    rows = []
    for key, p in points.items():
        if "busy" in p:  # another process is training it: no row
            continue
        diag = {(r["seed"], r.get("learning_rate"), ph): r for ph in ("diag_init", "diag_end") for r in p[ph]}
        seeds = (
            p["results"]["seeds"]
            if "results" in p
            else [{"seed": r["seed"], "learning_rate": r.get("learning_rate")} for r in p["diag_init"]]
        )
        for s in seeds:
            row = {"table": table, "row": key.row, "seq_len": key.seq_len, "seed": s["seed"]}
            if "learning_rate" in s:
                row["learning_rate"] = s["learning_rate"]
            if "results" in p:
                row["steps_done"] = p["results"]["steps_done"]
            row.update({f"final_{k}": v for k, v in s.get("final", {}).items()})
            row.update({f"valid_{k}": v for k, v in s.get("final_valid", {}).items()})
            row.update({k: s.get(k) for k in ("solved", "solved_at_step", "diverged_at_step") if k in s})
            for ph in ("diag_init", "diag_end"):
                found = diag.get((s["seed"], s.get("learning_rate"), ph)) or diag.get((s["seed"], None, ph))
                if found:
                    carry = found["carry"]
                    row.update({f"{ph}_decay_rate": carry["decay_rate"], f"{ph}_horizon": carry["horizon"]})
            rows.append(row)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    io.atomic_write(path, lambda f: f.write(buf.getvalue()))


def write_plots(
    out_dir: Path, table: str, sweep: Sweep, configs: dict[PointKey, Config], points: dict[PointKey, dict]
) -> list[Path]:
    """Learning curves of the headline metric per T, and (for several T) the final metric against T."""
    from experiments.plots import plot_learning_curves, plot_metric_vs_length  # matplotlib: not for a bad flag

    if sweep.measure == "gradients":
        return []
    rows = list(dict.fromkeys(k.row for k in points))
    lens = list(dict.fromkeys(k.seq_len for k in points))
    paths = []
    for T in lens:
        trained = [r for r in rows if "busy" not in points[PointKey(r, T)]]  # a busy point has no curve yet
        if not trained:
            continue
        task = task_of(configs[PointKey(trained[0], T)])
        curves = {r: _curve(points[PointKey(r, T)], task.headline) for r in trained}
        baseline = 1.0 if task.headline == "ratio" else task.baseline
        name = f"{task.metric_name} / baseline" if task.headline == "ratio" else task.metric_name
        path = out_dir / f"{table}_curves_T{T}.png"
        plot_learning_curves(curves, baseline, name, path, f"{table}, T={T}")
        paths.append(path)
    if len(lens) < 2 or not any("results" in p for p in points.values()):
        return paths
    task = task_of(configs[next(iter(points))])

    def final(point: dict) -> list[float]:
        return [s["final"][task.headline] for s in best_members(point["results"])] if "results" in point else [math.nan]

    finals = {r: [final(points[PointKey(r, T)]) for T in lens] for r in rows}
    path = out_dir / f"{table}_final_vs_T.png"
    baseline = 1.0 if task.headline == "ratio" else task.baseline
    name = f"final {task.metric_name}" + (" / baseline" if task.headline == "ratio" else "")
    plot_metric_vs_length(lens, finals, baseline, name, path, f"{table}: final metric against length")
    return [*paths, path]


def _curve(point: dict, metric: str) -> tuple[list[int], np.ndarray]:
    """(steps, values (steps, seeds)) of the held-out `metric`, for the seeds the table reports."""
    records = _of_reported(point["results"], point["metrics"])
    steps = sorted({r["step"] for r in records})
    return steps, np.array([[r[f"eval_{metric}"] for r in records if r["step"] == s] for s in steps])


def write_report(
    out_dir: Path,
    table: str,
    sweep: Sweep,
    points: dict[PointKey, dict],
    command: str,
    elapsed: float,
    written: list[Path] | None = None,
) -> str:
    """`<table>.md`, `<table>.csv` and the plots in `out_dir`, from `points`; returns the report and adds the
    paths of the files it wrote to `written`."""
    wall = sum(p["results"]["wall_time_s"] for p in points.values() if "results" in p)
    configs = sweep.points()
    report = render(table, sweep, configs, points, command, wall or elapsed)
    plots = write_plots(out_dir, table, sweep, configs, points)
    report += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in plots) + "\n"
    io.atomic_write(out_dir / f"{table}.md", lambda f: f.write(report))
    write_csv(out_dir / f"{table}.csv", table, points)
    if written is not None:
        written += [out_dir / f"{table}.md", out_dir / f"{table}.csv", *plots]
    return report
