"""Fine-tuning a trained model on new people: does an imprinted head help, does UNPG, does frozen BatchNorm?
One factor at a time around one fine-tune baseline, in two regimes, paired by seed.

    python benchmarks/finetune_study.py                      # trains the start model first (reused afterwards)
    python benchmarks/finetune_study.py --init work_dirs/my_model --regimes '100 ids x 32 img' --seeds 0 1 2 3 4

Start model (without --init): TinyFaceNet, ArcFace, s = 32, batch 64 (configs/synthetic_compare) on the "classic"
synthetic preset, 1000 identities x 16 images, no wrong labels, 3 epochs with 1 of warmup (750 steps), in
OUTPUT/start_model. Fine-tune baseline: that backbone (init_backbone), imprinted head (init_head = "imprint"),
ArcFace, lr 0.1 with the recipe's linear decay, BatchNorm in train mode, on the "hard" preset (head turns, masks,
sunglasses, harsh light) with identities the start model never saw (synthetic.identity_offset = 100000), no wrong
labels. Regimes: 100 identities x 32 images (2 epochs, 100 steps) and 1000 identities x 2 images (2 epochs, 62
steps). Each level changes one thing (LEVELS); this is not a full factorial. Every run is scored on 200 held-out
"hard" identities x 4 images (all pairs, flip test) at step 0 and every --eval-every steps (each run trains in
segments that resume exactly). With --lfw, the start model and the seed-0 baseline model of each regime are also
scored on that .bin (a model of synthetic faces: expect little). Levels run in the order listed (a study cut short keeps the first factors); finished runs are reused.
Writes, into --results: study.md, study.json and study.png (accuracy against step per level, both regimes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from compare_unpg import METHODS, ROOT, SYNTHETIC_TEST, launch_runs, load_records  # the sibling benchmark
from unpg_study import merged, slug  # nested config overrides, folder names

from recipes.arcface_torch.atomic_file import write_bytes_atomically

CONFIG = "synthetic_compare"
START = {
    "synthetic": {"preset": "classic", "num_identities": 1000, "images_per_identity": 16, "label_noise": 0.0},
    "num_epoch": 3,
    "warmup_epoch": 1,
    "num_workers": 1,
}
BASE = {
    "synthetic": {
        "preset": "hard",
        "max_yaw": 40.0,
        "label_noise": 0.0,
        "val_identities": 200,
        "identity_offset": 100_000,
    },
    "init_head": "imprint",
    "val_targets": [],
}
REGIMES = {
    "100 ids x 32 img": {"synthetic": {"num_identities": 100, "images_per_identity": 32}, "num_epoch": 2},
    "1000 ids x 2 img": {"synthetic": {"num_identities": 1000, "images_per_identity": 2}, "num_epoch": 2},
}
# (level, factor, overrides on top of BASE and the regime, method of compare_unpg.METHODS)
LEVELS = [
    ("fine-tune (imprinted head)", "baseline", {}, "arcface"),
    ("random head", "head init", {"init_head": "random"}, "arcface"),
    ("from scratch", "start", {"init_backbone": "", "init_head": "random"}, "arcface"),
    ("ArcFace + UNPG", "loss", {}, "arcface+unpg"),
    ("UNPG from epoch 1", "loss", {}, "unpg_from1"),
    ("bn_mode frozen", "BatchNorm", {"bn_mode": "frozen"}, "arcface"),
    ("backbone LR x 0.1", "LR groups", {"backbone_lr_scale": 0.1}, "arcface"),
]
BASELINE, RANDOM_HEAD = LEVELS[0][0], LEVELS[1][0]
FARS = [1e-2, 1e-3, 1e-4]


def train_start_model(output: Path, log) -> Path:
    """OUTPUT/start_model (reused when its model.pt exists)."""
    folder = output / "start_model"
    if (folder / "model.pt").is_file():
        return folder
    command = [sys.executable, "recipes/arcface_torch/train.py", CONFIG, "--force", "--set", f"output={folder}"]
    for key, value in _flat(START):
        command += ["--set", f"{key}={value!r}"]
    log(f"training the start model into {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / "start_model.log", "w") as handle:
        code = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"the start model did not train (exit {code}); see {folder.parent / 'start_model.log'}")
    return folder


def _flat(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def build_plan(regimes, levels, seeds, init: Path, output: Path, eval_every: int, extra: dict) -> list[dict]:
    plan = []
    for level, _, overrides, method in levels:
        for regime in regimes:
            for seed in seeds:
                settings = merged(
                    merged(merged({**BASE, "init_backbone": str(init)}, REGIMES[regime]), overrides), extra
                )
                plan.append(
                    {
                        "run_dir": str(output / "runs" / slug(regime) / slug(level) / f"seed{seed}"),
                        "regime": regime,
                        "level": level,
                        "config": CONFIG,
                        "method": method,
                        "seed": seed,
                        "tests": [],
                        "fars": FARS,
                        "eval_every": eval_every,
                        "overrides": {**settings, **METHODS[method], "seed": seed},
                    }
                )
    return plan


def first_step_reaching(curve: list[dict], accuracy: float) -> int | None:
    """The first evaluated step whose accuracy is >= `accuracy` (None if none)."""
    for point in curve:
        if point[SYNTHETIC_TEST]["accuracy"] >= accuracy:
            return int(point["step"])
    return None


def summarise_regime(regime: str, levels, plan: list[dict]) -> dict:
    """Per level of one regime: the mean curve, final accuracy / TAR, paired differences to the baseline, and
    the steps each level needs to reach the random head's (and the baseline's) final accuracy."""
    records = {(e["level"], e["seed"]): r for e in plan if e["regime"] == regime for r in load_records([e])}
    finals = {
        key: (r["sets"][SYNTHETIC_TEST]["accuracy"] * 100, r["sets"][SYNTHETIC_TEST]["tar_at_far"]["0.001"] * 100)
        for key, r in records.items()
    }
    rows = []
    for level, factor, _, method in levels:
        seeds = sorted(seed for (lv, seed) in records if lv == level)
        if not seeds:
            continue
        curves = [records[(level, s)]["curve"] for s in seeds]
        steps = [point["step"] for point in curves[0]]
        accuracy_curve = np.array([[p[SYNTHETIC_TEST]["accuracy"] * 100 for p in c[: len(steps)]] for c in curves])
        row = {
            "level": level,
            "factor": factor,
            "method": method,
            "seeds": seeds,
            "steps": steps,
            "accuracy_curve": accuracy_curve.tolist(),
            "accuracy": [finals[(level, s)][0] for s in seeds],
            "tar_1e-3": [finals[(level, s)][1] for s in seeds],
            "train_seconds": float(np.mean([records[(level, s)]["train_seconds"] for s in seeds])),
        }
        paired = [s for s in seeds if (BASELINE, s) in finals]
        row["d_accuracy"] = [finals[(level, s)][0] - finals[(BASELINE, s)][0] for s in paired]
        row["d_tar_1e-3"] = [finals[(level, s)][1] - finals[(BASELINE, s)][1] for s in paired]
        for reference, key in ((RANDOM_HEAD, "reaches_random_head_final"), (BASELINE, "reaches_baseline_final")):
            row[key] = [
                first_step_reaching(
                    records[(level, s)]["curve"], records[(reference, s)]["sets"][SYNTHETIC_TEST]["accuracy"]
                )
                if (reference, s) in records
                else None
                for s in seeds
            ]
        rows.append(row)
    return {"regime": regime, "rows": rows}


def mean_std(values, signed: bool = False) -> str:
    values = np.asarray([v for v in values if v is not None], dtype=float)
    if values.size == 0:
        return "n/a"
    return f"{values.mean():+.2f} +- {values.std():.2f}" if signed else f"{values.mean():.2f} +- {values.std():.2f}"


def steps_text(steps: list[int | None]) -> str:
    return ", ".join("never" if s is None else str(s) for s in steps)


def write_table(summaries: list[dict], header: str, lfw: dict | None) -> str:
    lines = [header, ""]
    for summary in summaries:
        rows = summary["rows"]
        if not rows:
            continue
        steps = rows[0]["steps"]
        lines += [
            f"### {summary['regime']}",
            "",
            "| factor | level | "
            + " | ".join(f"acc @{s} (%)" for s in steps[:-1])
            + f" | final acc @{steps[-1]} (%) | d acc vs baseline (points) | wins | TAR@1e-3 (%) | d TAR@1e-3 "
            "| step reaching the random head's final acc (per seed) |",
            "|---|---|" + "---|" * (len(steps) - 1) + "---|---|---|---|---|---|",
        ]
        for row in rows:
            curve = np.asarray(row["accuracy_curve"])
            cells = [row["factor"], row["level"]] + [f"{v:.2f}" for v in curve.mean(0)[:-1]]
            wins = sum(d > 0 for d in row["d_accuracy"])
            is_base = row["level"] == BASELINE
            cells += [
                mean_std(row["accuracy"]),
                "" if is_base else mean_std(row["d_accuracy"], signed=True),
                "" if is_base else f"{wins}/{len(row['d_accuracy'])}",
                mean_std(row["tar_1e-3"]),
                "" if is_base else mean_std(row["d_tar_1e-3"], signed=True),
                steps_text(row["reaches_random_head_final"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if lfw:
        lines += [
            f"### LFW ({lfw['path']}, 6000 pairs, 10-fold accuracy with flip), seed 0",
            "",
            "| model | LFW accuracy (%) |",
            "|---|---|",
        ]
        lines += [f"| {name} | {accuracy * 100:.2f} |" for name, accuracy in lfw["scores"].items()]
        lines.append("")
    return "\n".join(lines)


def plot(summaries: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in summaries if s["rows"]]
    figure, axes = plt.subplots(1, len(shown), figsize=(6.5 * len(shown), 4.8), squeeze=False)
    for axis, summary in zip(axes[0], shown, strict=True):
        for row in summary["rows"]:
            curve = np.asarray(row["accuracy_curve"])
            line = axis.plot(row["steps"], curve.mean(0), marker="o", markersize=3, label=row["level"])[0]
            axis.fill_between(row["steps"], curve.min(0), curve.max(0), color=line.get_color(), alpha=0.12)
        axis.set_title(f"{summary['regime']} (hard preset, new identities)")
        axis.set_xlabel("fine-tuning step (batch 64)")
        axis.set_ylabel("held-out accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    figure.suptitle("lines: mean over seeds; bands: min-max over seeds")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def score_lfw(lfw_path: str, models: dict[str, Path], cfg) -> dict:
    """{name: 10-fold LFW accuracy} of each model.pt or run folder."""
    from recipes.arcface_torch.backbone_init import load_init_backbone
    from recipes.arcface_torch.backbones import get_model
    from recipes.arcface_torch.evaluation.bin_file import load_bin
    from recipes.arcface_torch.evaluation.verification import evaluate

    pairs = load_bin(lfw_path)
    scores = {}
    for name, path in models.items():
        backbone = get_model(cfg.network, num_features=cfg.embedding_size)
        cfg.init_backbone = str(path)
        load_init_backbone(cfg, backbone)
        scores[name] = float(evaluate(backbone, pairs)["accuracy"])
    return {"path": lfw_path, "scores": scores}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", help="start model (model.pt, checkpoint or run folder); default: train it")
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    names = [level for level, *_ in LEVELS]
    parser.add_argument("--levels", nargs="+", default=names, choices=names, help="levels to run (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--eval-every", type=int, default=25, help="score the held-out set every N steps")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override on every run")
    parser.add_argument("--lfw", help="also score the start model and each regime's seed-0 baseline on this .bin")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    parser.add_argument("--no-run", action="store_true", help="start no run; summarise the finished ones")
    parser.add_argument("--output", default="work_dirs/finetune_study", help="folder for the runs")
    parser.add_argument("--results", default="benchmarks/results/finetune_study", help="folder for study.md/json/png")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.eval_every < 1:
        print(f"error: --jobs {args.jobs} and --eval-every {args.eval_every} must be >= 1", file=sys.stderr)
        return 1
    if args.lfw and not Path(args.lfw).is_file():
        print(f"error: --lfw {args.lfw} does not exist; pass an insightface .bin such as lfw.bin", file=sys.stderr)
        return 1
    from recipes.arcface_torch.checkpoint import CheckpointError
    from recipes.arcface_torch.config import ConfigError, get_config
    from recipes.arcface_torch.train import nest, parse_override

    output, started = Path(args.output).resolve(), time.time()  # the runs start in the repository root

    def log(line: str) -> None:
        print(f"[{(time.time() - started) / 60:5.1f} min] {line}", flush=True)

    levels = [entry for entry in LEVELS if entry[0] in args.levels]
    try:
        extra = nest(parse_override(item) for item in args.set)
        get_config(CONFIG, **merged({**BASE, "init_head": "random"}, extra))  # bad overrides stop here
        init = Path(args.init).resolve() if args.init else train_start_model(output, log).resolve()
        cfg = get_config(CONFIG, **merged({**BASE, "init_backbone": str(init)}, extra))
        from compare_unpg import initial_backbone

        initial_backbone(cfg)  # a start model that does not fit stops here, in one line
    except (ConfigError, CheckpointError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    plan = build_plan(args.regimes, levels, args.seeds, init, output, args.eval_every, extra)
    failed = []
    if not args.no_run:
        outcomes = launch_runs(plan, args.jobs, log=log)
        failed = [Path(entry["run_dir"]).relative_to(output) for entry, code in outcomes if code != 0]
    summaries = [summarise_regime(regime, levels, plan) for regime in args.regimes]
    lfw = None
    if args.lfw:
        models = {"start model (classic preset), before fine-tuning": init}
        for entry in plan:
            chosen = entry["seed"] == min(args.seeds) and entry["level"] == BASELINE
            if chosen and (Path(entry["run_dir"]) / "model.pt").is_file():
                models[f"{entry['regime']}: {entry['level']}"] = Path(entry["run_dir"]) / "model.pt"
        log(f"scoring {len(models)} models on {args.lfw}")
        lfw = score_lfw(args.lfw, models, cfg)
    finished = len(load_records(plan))
    seconds = [r["train_seconds"] for r in load_records(plan)]
    command = " ".join(
        [
            "python benchmarks/finetune_study.py",
            *(["--init", str(args.init)] if args.init else []),
            "--seeds",
            *map(str, args.seeds),
            *(f"--set {x}" for x in args.set),
            *(["--lfw", args.lfw] if args.lfw else []),
        ]
    )
    header = (
        f"`{command}` | config {CONFIG} + {json.dumps(BASE)}, regimes {json.dumps({r: REGIMES[r] for r in args.regimes})} "
        f"| start model {init} | {finished} of {len(plan)} runs finished, {args.jobs} in parallel on {os.cpu_count()} "
        f"CPU cores, mean time per run (training + curve scoring) {np.mean(seconds) / 60 if seconds else 0:.1f} min"
    )
    table = write_table(summaries, header, lfw)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(results / "study.md", (table + "\n").encode())
    write_bytes_atomically(results / "study.json", json.dumps({"summaries": summaries, "lfw": lfw}, indent=1).encode())
    if any(s["rows"] for s in summaries):
        plot(summaries, results / "study.png")
    print(table)
    if failed:
        print(f"error: {len(failed)} run(s) failed: {', '.join(map(str, failed))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
