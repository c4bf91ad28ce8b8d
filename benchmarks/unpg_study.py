"""When does UNPG help? ArcFace vs ArcFace+UNPG, one factor at a time around one base setting, paired by seed.

    python benchmarks/unpg_study.py                       # every level, 3 seeds, 2 runs at a time
    python benchmarks/unpg_study.py --levels base s=64 --seeds 0 1 2 3 4
    python benchmarks/unpg_study.py --init work_dirs/my_model --set init_head=imprint   # fine-tuning a trained model

Base setting: TinyFaceNet, batch 64, the "hard" synthetic task (head turns up to 40 degrees, masks,
harsh light), 400 training identities x 8 images, 5% wrong labels, s = 32, 3 epochs = 150 steps,
no warmup; scored over all pairs of 200 held-out identities x 4 images. Each level changes one thing
(see LEVELS); the last ones try UNPG's options beyond the paper (unpg.pair_weight, unpg.start_epoch) where the
paper's UNPG won and where it lost. Levels are run in the order listed, so a run cut short still holds the
first factors; finished runs are reused when the command is repeated, and --no-run only summarises the
finished ones. --init starts every run from a trained backbone (config.init_backbone) instead of random weights. Writes, into --results: study.md (per level: mean accuracy and TAR of both losses and the
paired difference with its spread and wins over seeds), study.json and study.png (the differences per level
with their seed-to-seed spread).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from compare_unpg import METHODS, launch_runs, load_records  # the sibling benchmark: run machinery

from recipes.arcface_torch.atomic_file import write_bytes_atomically

BASE = {
    "synthetic": {
        "preset": "hard",
        "max_yaw": 40.0,
        "num_identities": 400,
        "images_per_identity": 8,
        "label_noise": 0.05,
        "val_identities": 200,
    },
    "num_epoch": 3,
    "val_targets": [],
}
PAIR = ("arcface", "arcface+unpg")
FEW_CLASSES = {"synthetic": {"num_identities": 100, "images_per_identity": 32}}  # 99 class negatives per row
# (level name, factor, overrides on top of BASE, methods run at this level[, the level whose ArcFace is the
# reference]); a level that runs only a UNPG variant is compared with the base level's ArcFace unless it names
# another level (its overrides then repeat that level's).
LEVELS = [
    ("base", "base", {}, PAIR),
    ("s=64", "scale s", {"scale": 64.0}, PAIR),
    ("no filter", "wisk", {}, ("unpg_nofilter",)),
    ("wisk 1.0", "wisk", {}, ("unpg_wisk1.0",)),
    ("frontal (max_yaw 0)", "pose", {"synthetic": {"max_yaw": 0.0}}, PAIR),
    (
        "1600 ids x 2 img",
        "classes vs batch pairs",
        {"synthetic": {"num_identities": 1600, "images_per_identity": 2}},
        PAIR,
    ),
    ("2x steps", "training length", {"num_epoch": 6}, PAIR),
    ("100 ids x 32 img", "classes vs batch pairs", FEW_CLASSES, PAIR),
    ("no label noise", "label noise", {"synthetic": {"label_noise": 0.0}}, PAIR),
    ("warmup 1 epoch", "LR schedule", {"warmup_epoch": 1}, PAIR),
    ("classic task", "synthetic preset", {"synthetic": {"preset": "classic"}}, PAIR),
    ("wisk 0.5", "wisk", {}, ("unpg_wisk0.5",)),
    (
        "batch 128, 800 ids x 8 img",
        "classes vs batch pairs",
        {"batch_size": 128, "synthetic": {"num_identities": 800, "images_per_identity": 8}},
        PAIR,
    ),
    # options beyond the paper, off by default: do they keep UNPG's wins (base) and remove its losses (100 x 32)?
    ("pair_weight 0.1", "option (not in the paper)", {}, ("unpg_pw0.1",)),
    (
        "100 ids x 32 img, pair_weight 0.1",
        "option (not in the paper)",
        FEW_CLASSES,
        ("unpg_pw0.1",),
        "100 ids x 32 img",
    ),
    ("UNPG from epoch 1", "option (not in the paper)", {}, ("unpg_from1",)),
    (
        "100 ids x 32 img, UNPG from epoch 1",
        "option (not in the paper)",
        FEW_CLASSES,
        ("unpg_from1",),
        "100 ids x 32 img",
    ),
    # the strongest baseline here (warmup), trained twice as long: does the gain shrink as the baseline learns?
    ("warmup 1 epoch, 2x steps", "LR schedule + length", {"warmup_epoch": 1, "num_epoch": 6}, PAIR),
]
TEST_SET = "synthetic_heldout"
FARS = [1e-2, 1e-3, 1e-4]


def merged(base: dict, extra: dict) -> dict:
    out = json.loads(json.dumps(base))
    for key, value in extra.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def slug(level: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in level).strip("_")


def build_plan(levels: list[tuple], seeds: list[int], config: str, output: Path, extra: dict) -> list[dict]:
    plan = []
    for level, _, overrides, methods, *_ in levels:
        for seed in seeds:
            for method in methods:
                plan.append(
                    {
                        "run_dir": str(output / "runs" / slug(level) / f"{method}_seed{seed}"),
                        "level": level,
                        "config": config,
                        "method": method,
                        "seed": seed,
                        "tests": [],
                        "fars": FARS,
                        "overrides": {**merged(merged(BASE, overrides), extra), **METHODS[method], "seed": seed},
                    }
                )
    return plan


def level_rows(levels: list[tuple], plan: list[dict]) -> list[dict]:
    """Per level: means of both losses and the per-seed paired differences (UNPG variant - ArcFace)."""
    records = {(e["level"], e["method"], e["seed"]): r for e in plan for r in load_records([e])}
    rows = []
    for level, factor, _, methods, *reference in levels:
        variant = methods[-1]
        base_level = level if "arcface" in methods else (reference[0] if reference else "base")
        seeds = sorted(
            {s for (lv, m, s) in records if lv == level and m == variant}
            & {s for (lv, m, s) in records if lv == base_level and m == "arcface"}
        )
        if not seeds:
            continue

        def metric(record, name):
            scored = record["sets"][TEST_SET]
            return scored["accuracy"] if name == "accuracy" else scored["tar_at_far"][name]

        row = {"level": level, "factor": factor, "variant": variant, "seeds": seeds}
        for name in ("accuracy", "0.001", "0.0001"):
            arc = np.array([metric(records[(base_level, "arcface", s)], name) for s in seeds]) * 100
            unpg = np.array([metric(records[(level, variant, s)], name) for s in seeds]) * 100
            row[name] = {"arcface": arc.tolist(), "unpg": unpg.tolist(), "diff": (unpg - arc).tolist()}
        row["wins"] = int(sum(d > 0 for d in row["accuracy"]["diff"]))
        row["steps"] = records[(level, variant, seeds[0])]["steps"]
        row["train_seconds"] = float(np.mean([records[(level, variant, s)]["train_seconds"] for s in seeds]))
        rows.append(row)
    return rows


def mean_train_minutes(plan: list[dict]) -> float:
    seconds = [record["train_seconds"] for record in load_records(plan)]
    return float(np.mean(seconds)) / 60 if seconds else 0.0


def fmt(values) -> str:
    values = np.asarray(values, dtype=float)
    return "n/a" if not np.isfinite(values).any() else f"{np.nanmean(values):+.2f} +- {np.nanstd(values):.2f}"


def plain(values) -> str:
    values = np.asarray(values, dtype=float)
    return "n/a" if not np.isfinite(values).any() else f"{np.nanmean(values):.2f}"


def write_table(rows: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| factor | level | steps | ArcFace acc (%) | UNPG acc (%) | d acc (points, mean +- std) | UNPG wins (acc) "
        "| ArcFace TAR@1e-3 (%) | UNPG TAR@1e-3 (%) | d TAR@1e-3 (points) | d TAR@1e-4 (points) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        acc, tar3, tar4 = row["accuracy"], row["0.001"], row["0.0001"]
        name = row["level"] if row["variant"] == "arcface+unpg" else f"{row['level']} ({row['variant']})"
        lines.append(
            f"| {row['factor']} | {name} | {row['steps']} | {plain(acc['arcface'])} | {plain(acc['unpg'])} | "
            f"{fmt(acc['diff'])} | {row['wins']}/{len(row['seeds'])} | {plain(tar3['arcface'])} | "
            f"{plain(tar3['unpg'])} | {fmt(tar3['diff'])} | {fmt(tar4['diff'])} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [row["level"] if row["variant"] == "arcface+unpg" else f"{row['level']}" for row in rows]
    y = np.arange(len(rows))
    figure, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(rows) + 1.6), sharey=True)
    for axis, name, title in ((axes[0], "accuracy", "10-fold accuracy"), (axes[1], "0.001", "TAR@FAR=1e-3")):
        diffs = [np.asarray(row[name]["diff"], dtype=float) for row in rows]
        means = [np.nanmean(d) if np.isfinite(d).any() else 0.0 for d in diffs]
        colours = ["tab:green" if m > 0 else "tab:red" for m in means]
        axis.barh(y, means, color=colours, alpha=0.6)
        for index, d in enumerate(diffs):
            axis.scatter(d, np.full(d.shape, index), color="black", s=12, zorder=3)
        axis.axvline(0.0, color="black", linewidth=0.8)
        axis.set_title(f"UNPG - ArcFace, {title} (points)")
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, labels)
    axes[0].invert_yaxis()
    figure.suptitle("bars: mean over seeds; dots: one seed each; green: UNPG ahead on average")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [level for level, *_ in LEVELS]
    parser.add_argument("--levels", nargs="+", default=names, choices=names, help="levels to run (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--config", default="synthetic_compare", help="base config (model, batch, scale, optimiser)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override on every run (after the level's)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    parser.add_argument("--init", metavar="PATH", help="start every run from this backbone (init_backbone)")
    parser.add_argument("--no-run", action="store_true", help="start no run; summarise the finished ones")
    parser.add_argument("--output", default="work_dirs/unpg_study", help="folder for the runs")
    parser.add_argument("--results", default="benchmarks/results/unpg_study", help="folder for study.md/json/png")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        print(f"error: --jobs {args.jobs} must be >= 1", file=sys.stderr)
        return 1
    levels = [entry for entry in LEVELS if entry[0] in args.levels]
    for _, _, _, methods, *reference in list(levels):  # the levels whose ArcFace a variant-only level needs
        needed = reference[0] if reference else "base"
        if methods != PAIR and needed not in [entry[0] for entry in levels]:
            levels.insert(0, next(entry for entry in LEVELS if entry[0] == needed))
    from recipes.arcface_torch.checkpoint import CheckpointError
    from recipes.arcface_torch.config import ConfigError, get_config
    from recipes.arcface_torch.train import nest, parse_override

    try:
        extra = nest(parse_override(item) for item in args.set)
        if args.init:
            extra["init_backbone"] = str(Path(args.init).resolve())
        cfg = get_config(args.config, **merged(BASE, extra))
        if args.init:
            from compare_unpg import initial_backbone

            initial_backbone(cfg)  # a backbone that does not fit stops here, in one line
    except (ConfigError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    plan = build_plan(levels, args.seeds, args.config, Path(args.output), extra)
    started = time.time()
    failed = []
    if not args.no_run:
        outcomes = launch_runs(
            plan, args.jobs, log=lambda line: print(f"[{(time.time() - started) / 60:5.1f} min] {line}", flush=True)
        )
        failed = [Path(entry["run_dir"]).relative_to(args.output) for entry, code in outcomes if code != 0]
    finished = len(load_records(plan))
    rows = level_rows(levels, plan)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    chosen = (
        [] if args.levels == names else ["--levels", *(repr(level) if " " in level else level for level in args.levels)]
    )
    command = " ".join(
        [
            "python benchmarks/unpg_study.py",
            *chosen,
            *(["--init", args.init] if args.init else []),
            "--seeds",
            *map(str, args.seeds),
            *(f"--set {x}" for x in args.set),
        ]
    )
    header = (
        f"`{command}` | config {args.config} + "
        f"{json.dumps(BASE)} | {finished} of {len(plan)} runs finished, {args.jobs} in parallel on {os.cpu_count()} CPU cores, "
        f"mean train time per run {mean_train_minutes(plan):.1f} min"
    )
    table = write_table(rows, header)
    write_bytes_atomically(results / "study.md", (table + "\n").encode())
    write_bytes_atomically(results / "study.json", json.dumps(rows, indent=1).encode())
    if rows:
        plot(rows, results / "study.png")
    print(table)
    if failed:
        print(f"error: {len(failed)} run(s) failed: {', '.join(map(str, failed))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
