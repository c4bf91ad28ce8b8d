"""Does UNPG help on your faces? Train each method on the same data, seeds and steps; score every test set.

    python benchmarks/compare_unpg.py                                   # embedded synthetic data, 3 seeds
    python benchmarks/compare_unpg.py --train /data/my_faces_rec --test /data/test_a --test /data/lfw.bin \
        --methods arcface arcface+unpg --fars 1e-2 1e-3 --set num_epoch=5
    python benchmarks/compare_unpg.py --seeds 0 1 2 3 4 --set num_epoch=10 --jobs 4     # bigger
    python benchmarks/compare_unpg.py --init work_dirs/my_model --set init_head=imprint --train /data/my_faces \
        --test /data/my_test_faces --eval-every 25                          # fine-tuning a trained model

--train is an image folder (one sub-folder per identity) or a RecordIO folder (tools/pack_rec.py); without
it the config's data is used (synthetic identities by default). Each --test is an image folder of identities
that training never saw, or an insightface .bin; without --test on synthetic data, held-out synthetic
identities are the test set. Per test set and run:
  - 10-fold verification accuracy (insightface's protocol): over the .bin's pairs, or over balanced pairs of
    an identity folder (every positive pair, up to 3000, and as many random negatives),
  - TAR at each --fars (default 1e-2 1e-3 1e-4) and the positive/negative similarity overlap: over ALL pairs
    of an identity folder, over the .bin's pairs otherwise; a FAR that needs more negatives than the set has
    (1/FAR) is reported as n/a with the count it would need,
then per method mean +- std over seeds, the paired-by-seed difference to its base loss (arcface+unpg vs
arcface, ...) and on how many (seed, test set) pairs the method's accuracy beats the base.
--init starts every run from a trained backbone (config.init_backbone: a model.pt, a checkpoint or a run folder;
its network and embedding_size must be the config's) instead of random weights: losses compared in the
fine-tuning regime. --eval-every N also scores the test sets every N steps (and at step 0), training each run in
segments that resume exactly (an uninterrupted run gives the same weights); the curves go to result.json.
Methods: ArcFace, ArcFace+UNPG, CosFace, CosFace+UNPG, and ArcFace+UNPG with wisk 0.5, 1.0 and no filter
(ArcFace+UNPG is wisk 1.5); NPCFace, USS (on CosFace, from epoch 1), MagFace and MagFace+UNPG, each with
its paper defaults (config.<loss>). For one seed every method sees the same initial weights and data order.
Outputs in --output: results.md, results.json, roc.png (first test set), loss_curves.png,
similarity_<method>.png, and one folder per run (finished runs are reused: rerunning resumes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from recipes.arcface_torch.atomic_file import write_bytes_atomically

ROOT = Path(__file__).resolve().parents[1]

ARCFACE, COSFACE = (1.0, 0.5, 0.0), (1.0, 0.0, 0.4)
METHODS = {
    "arcface": {"loss": "margin_softmax", "margin_list": ARCFACE},
    "arcface+unpg": {"loss": "unpg", "margin_list": ARCFACE, "unpg": {"wisk": 1.5, "filter": True}},
    "cosface": {"loss": "margin_softmax", "margin_list": COSFACE},
    "cosface+unpg": {"loss": "unpg", "margin_list": COSFACE, "unpg": {"wisk": 1.5, "filter": True}},
    "unpg_wisk0.5": {"loss": "unpg", "margin_list": ARCFACE, "unpg": {"wisk": 0.5, "filter": True}},
    "unpg_wisk1.0": {"loss": "unpg", "margin_list": ARCFACE, "unpg": {"wisk": 1.0, "filter": True}},
    "unpg_nofilter": {"loss": "unpg", "margin_list": ARCFACE, "unpg": {"wisk": 1.5, "filter": False}},
    # options beyond the paper (plugins/unpg/unpg.py): the term weighted by lambda, or left out of epoch 0
    "unpg_pw0.1": {"loss": "unpg", "margin_list": ARCFACE, "unpg": {"wisk": 1.5, "pair_weight": 0.1}},
    "unpg_from1": {"loss": "unpg", "margin_list": ARCFACE, "unpg": {"wisk": 1.5, "start_epoch": 1}},
    "npcface": {"loss": "npcface"},
    "uss": {"loss": "uss", "margin_list": COSFACE},
    "magface": {"loss": "magface"},
    "magface+unpg": {"loss": ["magface", "unpg"], "unpg": {"wisk": 1.5, "filter": True}},
}
# The loss each method is compared with, paired by seed: a listed one, else the name before "+".
BASELINES = {name: "arcface" for name in ("unpg_wisk0.5", "unpg_wisk1.0", "unpg_nofilter", "unpg_pw0.1", "unpg_from1")}
DEFAULT_FARS = (1e-2, 1e-3, 1e-4)
HELD_OUT_OFFSET = 2_000_000  # identities disjoint from training and from the pair set
SYNTHETIC_TEST = "synthetic_heldout"
HELD_OUT_IMAGES_PER_IDENTITY = 4


def baseline_of(method: str) -> str | None:
    """The method's base loss for paired differences, or None when it has none in METHODS."""
    base = BASELINES.get(method, method.split("+")[0] if "+" in method else None)
    return base if base in METHODS and base != method else None


def test_set_name(path: str) -> str:
    """Short name of a test path: the .bin's stem or the folder's name."""
    return Path(path).stem if path.endswith(".bin") else Path(path.rstrip("/")).name


def check_test_path(path: str) -> str | None:
    """None if `path` can be a test set, else the one-sentence reason it cannot."""
    target = Path(path)
    if path.endswith(".bin"):
        return None if target.is_file() else f"--test {path}: the .bin file does not exist; check the path"
    if not target.is_dir():
        return f"--test {path}: not a .bin file nor a folder of identity sub-folders; check the path"
    from recipes.arcface_torch.datasets.image_folder_faces import list_identity_folder

    try:
        _, samples = list_identity_folder(target)
    except ValueError as error:
        return f"--test {path}: {error}"
    counts = np.bincount([label for _, label in samples])
    positives = int((counts * (counts - 1) // 2).sum())
    if positives < 5 or counts.size < 2:
        return (
            f"--test {path}: {counts.size} identities with {positives} positive pairs; 10-fold accuracy needs "
            f">= 2 identities and >= 5 positive pairs (identities with 2+ images)"
        )
    return None


def load_test_sets(tests: list[str], cfg) -> list[tuple[str, str, object]]:
    """[(name, kind, data)]: kind "bin" -> VerificationSet; kind "identities" -> (images, identity labels)."""
    from recipes.arcface_torch.evaluation.bin_file import load_bin
    from recipes.arcface_torch.evaluation.identity_set import load_identity_folder

    sets = []
    for path in tests:
        if path.endswith(".bin"):
            sets.append((test_set_name(path), "bin", load_bin(path)))
        else:
            sets.append((test_set_name(path), "identities", load_identity_folder(path)))
    if not tests and cfg.rec == "synthetic":
        from recipes.arcface_torch.datasets.synthetic_faces import SyntheticFaces

        s = cfg.synthetic
        per = HELD_OUT_IMAGES_PER_IDENTITY
        faces = SyntheticFaces(
            s.val_identities,
            per,
            seed=s.seed,
            identity_offset=HELD_OUT_OFFSET,
            flip=False,
            preset=s.preset,
            max_yaw=s.max_yaw,
        )
        images = np.stack([faces.render(HELD_OUT_OFFSET + i // per, i % per) for i in range(len(faces))])
        sets.append((SYNTHETIC_TEST, "identities", (images, np.arange(len(faces)) // per)))
    return sets


def score_test_set(backbone, kind: str, data, fars) -> dict:
    """One test set's numbers (JSON-ready) and its similarities for the plots."""
    if kind == "bin":
        from recipes.arcface_torch.evaluation.tar_far import roc_curve
        from recipes.arcface_torch.evaluation.verification import evaluate

        result = evaluate(backbone, data, fars=fars)
        cosines = np.concatenate([result["positive_similarities"], result["negative_similarities"]])
        same = np.r_[
            np.ones(len(result["positive_similarities"]), bool), np.zeros(len(result["negative_similarities"]), bool)
        ]
        fpr, tpr, _ = roc_curve(cosines, same)
        result["roc"] = (fpr, tpr)
        result["pairs"] = {"positive": int(same.sum()), "negative": int((~same).sum())}
        from recipes.arcface_torch.evaluation.plots import similarity_overlap

        result["overlap"] = similarity_overlap(result["positive_similarities"], result["negative_similarities"])
    else:
        from recipes.arcface_torch.evaluation.identity_set import evaluate_identity_set

        images, identity = data
        result = evaluate_identity_set(backbone, images, identity, fars)
    rng = np.random.default_rng(0)
    negatives = np.asarray(result["negative_similarities"])
    return {
        "accuracy": result["accuracy"],
        "overlap": result["overlap"],
        "pairs": result["pairs"],
        "tar_at_far": {f"{far:g}": result["tar_at_far"][far] for far in fars},
        "tar_at_far_notes": {f"{far:g}": result["tar_at_far_notes"][far] for far in fars},
        "roc": [np.asarray(result["roc"][0]).tolist(), np.asarray(result["roc"][1]).tolist()],
        "pos": np.asarray(result["positive_similarities"]).tolist(),
        "neg": rng.choice(negatives, size=min(20_000, negatives.size), replace=False).tolist(),
    }


def initial_backbone(cfg):
    """The backbone a run starts from: the config's init_backbone, else the trainer's random initialisation."""
    import torch

    from recipes.arcface_torch.backbone_init import load_init_backbone
    from recipes.arcface_torch.backbones import get_model

    torch.manual_seed(cfg.seed)  # as train.build_training_state seeds the backbone
    backbone = get_model(cfg.network, num_features=cfg.embedding_size)
    if cfg.init_backbone:
        load_init_backbone(cfg, backbone)
    return backbone


def curve_point(step: int, backbone, test_sets, fars) -> dict:
    """{"step", set name: {"accuracy", "tar_at_far"}} of one evaluation during a run."""
    point = {"step": step}
    for name, kind, data in test_sets:
        scored = score_test_set(backbone, kind, data, fars)
        point[name] = {"accuracy": scored["accuracy"], "tar_at_far": scored["tar_at_far"]}
    return point


def train_with_curve(cfg, test_sets, fars, eval_every: int) -> tuple[dict, list[dict]]:
    """train(cfg) in segments of `eval_every` steps, each resuming the previous one exactly (save_all_states),
    scoring the test sets at step 0 and after every segment: (the last train() result with the whole loss
    history, the curve)."""
    import copy

    import torch

    from recipes.arcface_torch.backbones import get_model
    from recipes.arcface_torch.train import train

    curve = [curve_point(0, initial_backbone(cfg), test_sets, fars)]
    history, step, target = [], 0, eval_every
    while True:
        segment = copy.deepcopy(cfg)
        segment.max_steps = min(target, cfg.max_steps) if cfg.max_steps else target
        segment.resume, segment.save_all_states = step > 0, True
        result = train(segment, force=step == 0)  # the harness writes spec.json and stdout.log there first
        if result["step"] == step:
            break  # the schedule ended at the previous segment
        history += result["loss_history"]
        step = result["step"]
        backbone = get_model(cfg.network, num_features=cfg.embedding_size)
        backbone.load_state_dict(torch.load(Path(cfg.output) / "model.pt", map_location="cpu", weights_only=True))
        curve.append(curve_point(step, backbone, test_sets, fars))
        if step < segment.max_steps or (cfg.max_steps and step >= cfg.max_steps):
            break
        target += eval_every
    return {**result, "step": step, "loss_history": history}, curve


def run_one(spec_path: Path) -> int:
    """Child process: train one (method, seed), score every test set, write result.json beside the run."""
    import torch

    from recipes.arcface_torch.backbones import get_model
    from recipes.arcface_torch.config import get_config
    from recipes.arcface_torch.train import train

    spec = json.loads(spec_path.read_text())
    cfg = get_config(spec["config"], **spec["overrides"])
    test_sets = load_test_sets(spec["tests"], cfg)
    started = time.time()
    curve = []
    if spec.get("eval_every"):
        result, curve = train_with_curve(cfg, test_sets, spec["fars"], spec["eval_every"])
    else:
        result = train(cfg, force=True)  # this harness writes spec.json and stdout.log into the folder first
    train_seconds = time.time() - started
    backbone = get_model(cfg.network, num_features=cfg.embedding_size)
    backbone.load_state_dict(torch.load(Path(cfg.output) / "model.pt", map_location="cpu", weights_only=True))
    record = {
        "method": spec["method"],
        "seed": spec["seed"],
        "steps": result["step"],
        "train_seconds": train_seconds,
        "loss_history": result["loss_history"],
        "curve": curve,
        "sets": {name: score_test_set(backbone, kind, data, spec["fars"]) for name, kind, data in test_sets},
    }
    write_bytes_atomically(spec_path.parent / "result.json", json.dumps(record).encode())
    return 0


def launch_runs(plan: list[dict], jobs: int, log=print) -> list[tuple[dict, int]]:
    """Run each plan entry {"run_dir", "config", "method", "seed", "overrides", "tests", "fars"} in its own
    process, `jobs` at a time, each with cores / jobs threads; a run whose result.json exists is reused."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads)), "PYTHONUNBUFFERED": "1"}

    def launch(entry: dict) -> tuple[dict, int]:
        run_dir = Path(entry["run_dir"])
        if (run_dir / "result.json").is_file():
            return entry, 0
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = {key: entry[key] for key in ("config", "method", "seed", "overrides", "tests", "fars")}
        spec["eval_every"] = entry.get("eval_every", 0)
        spec["overrides"] = {**spec["overrides"], "output": str(run_dir), "resume": False}
        (run_dir / "spec.json").write_text(json.dumps(spec))
        with open(run_dir / "stdout.log", "w") as handle:
            code = subprocess.run(
                [sys.executable, __file__, "--run-one", str(run_dir / "spec.json")],
                cwd=ROOT,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            ).returncode
        log(f"{run_dir.name}: {'done' if code == 0 else f'FAILED (exit {code}, see {run_dir}/stdout.log)'}")
        return entry, code

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(launch, plan))


def percent(values) -> str:
    """'mean +- std' in percent over the finite values, 'n/a' if none."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "n/a"
    return f"{values.mean() * 100:.2f} +- {values.std() * 100:.2f}"


def paired_difference(
    records: list[dict], method: str, base: str, test_set: str, metric
) -> tuple[np.ndarray, int, int]:
    """Per-seed metric(method) - metric(base) on one test set (seeds both finished), wins and comparisons."""
    by_seed = {r["seed"]: r for r in records if r["method"] == base}
    diffs = []
    for r in records:
        if r["method"] == method and r["seed"] in by_seed and test_set in r["sets"]:
            diffs.append(metric(r["sets"][test_set]) - metric(by_seed[r["seed"]]["sets"][test_set]))
    diffs = np.asarray(diffs, dtype=float)
    finite = diffs[np.isfinite(diffs)]
    return diffs, int((finite > 0).sum()), int(finite.size)


def tar_note(records: list[dict], test_set: str, far: str) -> str:
    """Why TAR@far is n/a on this set ("" if it is measurable)."""
    for r in records:
        note = r["sets"].get(test_set, {}).get("tar_at_far_notes", {}).get(far, "")
        if note:
            return note
    return ""


def summarise(records: list[dict], methods: list[str], fars: list[float], header: str) -> str:
    """Markdown: one table per test set (mean +- std over seeds; paired difference to the base loss and wins),
    then the per-method total of wins over all (seed, test set) comparisons."""
    far_keys = [f"{far:g}" for far in fars]
    mid = far_keys[len(far_keys) // 2]
    sets = list(dict.fromkeys(name for r in records for name in r["sets"]))
    lines = [header, ""]
    totals: dict[str, list[int]] = {}
    for test_set in sets:
        some = next(r for r in records if test_set in r["sets"])
        pairs = some["sets"][test_set]["pairs"]
        lines += [
            f"### {test_set} ({pairs['positive']} positive / {pairs['negative']} negative pairs for TAR)",
            "",
            "| method | accuracy (%) | "
            + " | ".join(f"TAR@FAR={k} (%)" for k in far_keys)
            + f" | overlap (%) | vs base: d accuracy (points) | d TAR@FAR={mid} (points) | acc. wins |",
            "|---|---|" + "---|" * len(far_keys) + "---|---|---|---|",
        ]
        for method in methods:
            runs = sorted(
                (r for r in records if r["method"] == method and test_set in r["sets"]), key=lambda r: r["seed"]
            )
            if not runs:
                continue
            row = [method, percent([r["sets"][test_set]["accuracy"] for r in runs])]
            row += [percent([r["sets"][test_set]["tar_at_far"][k] for r in runs]) for k in far_keys]
            row.append(percent([r["sets"][test_set]["overlap"] for r in runs]))
            base = baseline_of(method)
            if base is None:
                row += ["", "", ""]
            else:
                acc, wins, count = paired_difference(records, method, base, test_set, lambda s: s["accuracy"])
                tar, _, _ = paired_difference(records, method, base, test_set, lambda s: s["tar_at_far"][mid])
                row += [f"{percent(acc)} vs {base}", percent(tar), f"{wins}/{count}"]
                total = totals.setdefault(method, [0, 0])
                total[0] += wins
                total[1] += count
            lines.append("| " + " | ".join(row) + " |")
        notes = {k: tar_note(records, test_set, k) for k in far_keys}
        lines += [f"- TAR@FAR={k} is n/a: {note}" for k, note in notes.items() if note]
        lines.append("")
    if totals:
        lines.append(
            "Accuracy wins over the base loss, all (seed, test set) pairs: "
            + ", ".join(f"{m} {w}/{n}" for m, (w, n) in totals.items())
        )
    return "\n".join(lines)


def plot_results(records: list[dict], methods: list[str], output: Path) -> None:
    """loss_curves.png (mean over seeds), roc.png and similarity_<method>.png (first test set, lowest seed)."""
    from recipes.arcface_torch.evaluation.plots import plot_loss_curves, plot_roc, plot_similarity_histograms

    curves, rocs = {}, {}
    first_set = next(iter(records[0]["sets"]), None) if records else None
    for method in methods:
        runs = sorted((r for r in records if r["method"] == method), key=lambda r: r["seed"])
        if not runs:
            continue
        length = min(len(r["loss_history"]) for r in runs)
        steps = [s for s, _ in runs[0]["loss_history"][:length]]
        curves[method] = (steps, np.mean([[v for _, v in r["loss_history"][:length]] for r in runs], axis=0).tolist())
        if first_set is not None and first_set in runs[0]["sets"]:
            scored = runs[0]["sets"][first_set]
            rocs[method] = tuple(scored["roc"])
            plot_similarity_histograms(
                scored["pos"],
                scored["neg"],
                output / f"similarity_{method}.png",
                title=f"{method} on {first_set} (seed {runs[0]['seed']})",
            )
    plot_loss_curves(curves, output / "loss_curves.png")
    if rocs:
        plot_roc(rocs, output / "roc.png", title=f"{first_set}: all pairs")


def load_records(plan: list[dict]) -> list[dict]:
    """result.json of every finished run in the plan."""
    records = []
    for entry in plan:
        path = Path(entry["run_dir"]) / "result.json"
        if path.is_file():
            records.append(json.loads(path.read_text()))
    return records


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="synthetic_compare", help="base config for every run")
    parser.add_argument(
        "--train", help="training data: an image folder (one sub-folder per identity) or a RecordIO folder"
    )
    parser.add_argument(
        "--test",
        action="append",
        default=[],
        metavar="PATH",
        help="test set: a folder of identity sub-folders (all pairs scored) or a .bin (repeatable)",
    )
    parser.add_argument("--fars", nargs="+", type=float, default=list(DEFAULT_FARS), help="FARs to read TAR at")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (each gets cores / jobs threads)")
    parser.add_argument("--output", default="work_dirs/compare_unpg")
    parser.add_argument(
        "--init", metavar="PATH", help="start every run from this backbone (model.pt, checkpoint or run folder)"
    )
    parser.add_argument(
        "--eval-every", type=int, default=0, metavar="N", help="also score the test sets every N steps (a curve)"
    )
    parser.add_argument("--run-one", type=Path, help=argparse.SUPPRESS)
    return parser


def check_arguments(args) -> tuple[dict, str | None]:
    """(config overrides shared by every run, None) or ({}, the one-line error)."""
    from recipes.arcface_torch.config import ConfigError, get_config
    from recipes.arcface_torch.train import nest, parse_override

    if args.jobs < 1:
        return {}, f"--jobs {args.jobs} must be >= 1"
    if getattr(args, "eval_every", 0) < 0:
        return {}, f"--eval-every {args.eval_every} must be >= 0 (0: score only the final model)"
    init = getattr(args, "init", None)
    if init and not Path(init).exists():
        return {}, f"--init {init} does not exist; pass a model.pt, a training checkpoint or a run folder"
    for far in args.fars:
        if not 0.0 < far <= 1.0:
            return {}, f"--fars {far:g} is outside (0, 1]; pass FARs such as 1e-3"
    names = [test_set_name(path) for path in args.test]
    if len(set(names)) != len(names):
        return {}, f"--test names {names} repeat; give each test set a distinct file or folder name"
    for path in args.test:
        problem = check_test_path(path)
        if problem:
            return {}, problem
    if args.train and not Path(args.train).is_dir():
        return (
            {},
            f"--train {args.train} is not a folder; pass an image folder or a RecordIO folder (tools/pack_rec.py)",
        )
    try:
        common = nest(parse_override(item) for item in args.set)
        if args.train:
            common["rec"] = str(Path(args.train).resolve())
        if init:
            common["init_backbone"] = str(Path(init).resolve())
        common.setdefault("val_targets", [])  # the test sets replace the in-training evaluation
        cfg = get_config(args.config, **common)  # fail fast on a bad config or override
    except ConfigError as error:
        return {}, str(error)
    if init:
        from recipes.arcface_torch.checkpoint import CheckpointError

        try:
            initial_backbone(cfg)  # the same strict load every run makes: a mismatch stops here, in one line
        except CheckpointError as error:
            return {}, str(error)
    if not args.test and cfg.rec != "synthetic":
        return {}, "no --test given; pass at least one test set (a folder of held-out identities or a .bin)"
    return common, None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.run_one:
        return run_one(args.run_one)
    common, problem = check_arguments(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    output = Path(args.output).resolve()  # the runs start in the repository root
    tests = [str(Path(path).resolve()) for path in args.test]
    plan = [
        {
            "run_dir": str(output / "runs" / f"{method}_seed{seed}"),
            "config": args.config,
            "method": method,
            "seed": seed,
            "overrides": {**common, **METHODS[method], "seed": seed},
            "tests": tests,
            "fars": args.fars,
            "eval_every": args.eval_every,
        }
        for seed in args.seeds
        for method in args.methods
    ]
    started = time.time()
    outcomes = launch_runs(plan, args.jobs, log=lambda line: print(line, flush=True))
    failed = [(entry["method"], entry["seed"]) for entry, code in outcomes if code != 0]
    records = load_records(plan)
    wall = time.time() - started
    header = (
        f"{args.config} {' '.join(args.set)} | train {args.train or 'config data'} | "
        f"{f'from {args.init} | ' if args.init else ''}seeds {args.seeds} | "
        f"{len(records)} runs, {args.jobs} in parallel, {os.cpu_count()} CPU cores | wall time {wall / 60:.1f} min"
    )
    table = summarise(records, args.methods, args.fars, header)
    if records:
        plot_results(records, args.methods, output)
    write_bytes_atomically(output / "results.md", (table + "\n").encode())
    write_bytes_atomically(
        output / "results.json",
        json.dumps(
            [
                {
                    **{k: v for k, v in r.items() if k != "sets"},
                    "sets": {
                        n: {k: v for k, v in s.items() if k not in ("pos", "neg", "roc")} for n, s in r["sets"].items()
                    },
                }
                for r in records
            ]
        ).encode(),
    )
    print(table)
    if failed:
        print(f"error: {len(failed)} run(s) failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
