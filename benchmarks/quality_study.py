"""Which quality score says "do not trust this face"? ArcFace, ArcFace + RI and MagFace, scored by
error-versus-reject on held-out faces, clean and degraded on purpose; and whether RI training costs accuracy.

    python benchmarks/quality_study.py                        # 3 methods x 3 seeds, 2 runs at a time
    python benchmarks/quality_study.py --seeds 0 --no-run     # summarise the finished runs only
    python benchmarks/quality_study.py --bin /work/scratch/lfw/lfw.bin   # also an insightface .bin (e.g. LFW)
    python benchmarks/quality_study.py --bin /work/scratch/lfw/lfw.bin --rescore   # score finished runs again

Training: config synthetic_compare (TinyFaceNet, batch 64, s = 32) on the "classic" synthetic task (its faces
already vary: 30% at low resolution, half of them blurred, 15% occluded) with 400 identities x 8 images, no wrong
labels, 6 epochs (300 steps), 1 warmup epoch; "arcface+ri" adds the ri loss (plugins/ri, its defaults: from
epoch 1, tau 0.2); "magface" is MagFace with its defaults. Test: 2000 pairs (half positive) of 200 identities
training never saw (rendered once per seed); "degraded" is the same
pairs with every image, independently with probability 1/2, shrunk to 32, 24 or 16 pixels and back, blurred
(sigma 2.5 px) or occluded (degradations.LEVELS). Per model and set: 10-fold accuracy (flip test), and the
error-versus-reject curve (FNMR at FMR 1e-2 on the pairs left, 0-40% of images rejected,
evaluation/error_versus_reject.py) of each score: ri (the RI regressor, arcface+ri only), ers (1 - cosine to
the unrecognisable-identity centre; for every model built after training from 1024 training faces shrunk to
8x8 px and blurred, face_quality.py), norm; on the degraded set also "oracle" (minus the degradation level: a
perfect ranking of the degraded faces) and always random rejection. Writes into --results: study.md, study.json
and erc_<set>.png (mean curves over seeds). Finished runs are reused when the command is repeated.
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
CONFIG = "synthetic_compare"
BASE = {
    "synthetic": {"preset": "classic", "label_noise": 0.0, "num_identities": 400, "images_per_identity": 8},
    "num_epoch": 6,
    "warmup_epoch": 1,
    "val_targets": [],
}
METHODS = {
    "arcface": {"loss": "margin_softmax"},
    "arcface+ri": {"loss": "ri"},
    "magface": {"loss": "magface"},
}
TEST_PAIRS = 2000
TEST_IDENTITIES = 200
TEST_OFFSET = 3_000_000  # held-out identities, disjoint from training and the recipe's own validation pairs
FMR = 1e-2  # these small models reach TAR ~ 1-5% at FMR 1e-3: an FNMR near 100% everywhere says nothing
CENTRE_FACES = 1024


def held_out_sets(cfg, bins: list[str], cache: Path):
    """[(name, VerificationSet, severity or None)]: the clean held-out pairs, the same pairs degraded, and each
    --bin with its degraded copy. The synthetic pairs are rendered once per seed into `cache` (an .npz)."""
    from recipes.arcface_torch.datasets.synthetic_faces import synthetic_verification_set
    from recipes.arcface_torch.evaluation.bin_file import load_bin
    from recipes.arcface_torch.evaluation.degraded_set import degraded_verification_set
    from recipes.arcface_torch.evaluation.verification_set import VerificationSet

    s = cfg.synthetic
    if cache.is_file():
        data = np.load(cache)
        clean = VerificationSet("clean", data["clean"], data["issame"])
        degraded, severity = VerificationSet("degraded", data["degraded"], data["issame"]), data["severity"]
    else:
        clean = synthetic_verification_set(
            TEST_IDENTITIES,
            TEST_PAIRS,
            seed=s.seed,
            identity_offset=TEST_OFFSET,
            name="clean",
            preset=s.preset,
            max_yaw=s.max_yaw,
        )
        degraded, severity, _ = degraded_verification_set(clean, seed=0, name="degraded")
        temporary = cache.with_suffix(f".{os.getpid()}.npz")
        np.savez(temporary, clean=clean.images, degraded=degraded.images, issame=clean.issame, severity=severity)
        os.replace(temporary, cache)
    sets = [("clean", clean, None), ("degraded", degraded, severity)]
    for path in bins:
        vset = load_bin(path)
        sets.append((vset.name, vset, None))
        bad, bad_severity, _ = degraded_verification_set(vset, seed=0, name=f"{vset.name}_degraded")
        sets.append((bad.name, bad, bad_severity))
    return sets


def score_set(model, vset, severity) -> dict:
    """Accuracy and the error-versus-reject curve of every score on one set."""
    from recipes.arcface_torch.evaluation.error_versus_reject import error_versus_reject, random_rejection
    from recipes.arcface_torch.evaluation.verification import embed_with_flip, l2_normalize, ten_fold_accuracy
    from recipes.arcface_torch.face_quality import scores_of_embeddings

    plain, flipped = embed_with_flip(model.backbone, vset.images)
    unit = l2_normalize(plain + flipped)
    accuracy, accuracy_std, _ = ten_fold_accuracy(unit, vset.issame)
    pair_scores = np.sum(unit[0::2] * unit[1::2], axis=1)
    qualities = scores_of_embeddings(model, plain)
    if severity is not None:
        qualities["oracle"] = -severity.astype(np.float64)
    curves = {name: error_versus_reject(pair_scores, vset.issame, q, FMR).as_dict() for name, q in qualities.items()}
    curves["random"] = random_rejection(pair_scores, vset.issame, FMR, draws=10).as_dict()
    fixed = {
        name: error_versus_reject(pair_scores, vset.issame, q, FMR, threshold="fixed").as_dict()
        for name, q in qualities.items()
    }
    fixed["random"] = random_rejection(pair_scores, vset.issame, FMR, draws=10, threshold="fixed").as_dict()
    return {"accuracy": accuracy, "accuracy_std": accuracy_std, "curves": curves, "fixed_threshold_curves": fixed}


def quality_model_of(cfg):
    """The trained run's QualityModel: its backbone, a centre built after training from CENTRE_FACES training
    faces (the same way for every method) and, for the "ri" run, its trained regressor."""
    from recipes.arcface_torch.datasets.build import build_train_dataset
    from recipes.arcface_torch.face_quality import QualityModel, load_quality_model
    from recipes.arcface_torch.recognisability_file import Recognisability, load_recognisability
    from recipes.arcface_torch.unrecognisable_faces import centre_indices, centre_of_faces, tensor_to_face

    model = load_quality_model(Path(cfg.output), scores=("norm",))
    dataset = build_train_dataset(cfg)
    indices = centre_indices(len(dataset), CENTRE_FACES, cfg.seed, cfg.num_epoch, 0, 1)
    faces = np.stack([tensor_to_face(dataset[int(i)][0]) for i in indices])
    record = Recognisability(centre=centre_of_faces(model.backbone, faces), source="after training")
    saved = Path(cfg.output) / "recognisability.pt"
    if saved.is_file():  # the "ri" run: its regressor, with the centre built the same way as for the others
        trained = load_recognisability(saved)
        record.regressor_weight, record.regressor_bias = trained.regressor_weight, trained.regressor_bias
        record.ui_level = trained.ui_level
    return QualityModel(model.backbone, record).eval()


def run_one(spec_path: Path) -> int:
    """Child process: train one (method, seed), build the quality model, score every set, write result.json."""
    from recipes.arcface_torch.config import get_config
    from recipes.arcface_torch.train import train

    spec = json.loads(spec_path.read_text())
    cfg = get_config(spec["config"], **spec["overrides"])
    started = time.time()
    result = train(cfg, force=True)
    train_seconds = time.time() - started
    model = quality_model_of(cfg)
    sets = held_out_sets(cfg, spec["bins"], Path(spec["cache"]))
    output = {
        "method": spec["method"],
        "seed": spec["seed"],
        "steps": result["step"],
        "train_seconds": train_seconds,
        "sets": {name: score_set(model, vset, severity) for name, vset, severity in sets},
    }
    write_bytes_atomically(spec_path.parent / "result.json", json.dumps(output).encode())
    return 0


def score_again(spec_path: Path) -> int:
    """Child process: score a finished run on every set it lacks in the current form, --bin sets included."""
    from recipes.arcface_torch.config import get_config

    spec = json.loads(spec_path.read_text())
    cfg = get_config(spec["config"], **spec["overrides"])
    record = json.loads((spec_path.parent / "result.json").read_text())
    model = quality_model_of(cfg)
    old = record["sets"]
    record["sets"] = {
        name: old[name] if "fixed_threshold_curves" in old.get(name, {}) else score_set(model, vset, severity)
        for name, vset, severity in held_out_sets(cfg, spec["bins"], Path(spec["cache"]))
    }
    write_bytes_atomically(spec_path.parent / "result.json", json.dumps(record).encode())
    return 0


def launch(plan: list[dict], jobs: int, rescore: bool = False) -> None:
    """Train and score each run (reusing finished ones); with `rescore`, score finished runs on their --bin sets."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads)), "PYTHONUNBUFFERED": "1"}

    def one(entry: dict) -> None:
        run_dir = Path(entry["run_dir"])
        done = run_dir / "result.json"
        if rescore:  # finished runs scored before the --bin sets or the current scoring
            names = ["clean", "degraded"] + [Path(b).stem for b in entry["bins"]]
            sets = json.loads(done.read_text())["sets"] if done.is_file() else None
            if sets is None or all(n in sets and "fixed_threshold_curves" in sets[n] for n in names):
                return
        elif done.is_file():
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = {k: entry[k] for k in ("config", "method", "seed", "overrides", "bins", "cache")}
        (run_dir / "spec.json").write_text(json.dumps(spec))
        with open(run_dir / ("score.log" if rescore else "stdout.log"), "w") as handle:
            code = subprocess.run(
                [sys.executable, __file__, "--score-again" if rescore else "--run-one", str(run_dir / "spec.json")],
                cwd=ROOT,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            ).returncode
        print(
            f"{run_dir.name}: {'done' if code == 0 else f'FAILED (exit {code}, see {run_dir}/stdout.log)'}", flush=True
        )

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, plan))


def _mean_std(values) -> str:
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    return "n/a" if values.size == 0 else f"{100 * values.mean():.2f} +- {100 * values.std():.2f}"


def summarise(records: list[dict], header: str) -> str:
    """Markdown: per set, accuracy and ERC areas per method (mean +- std over seeds); RI's accuracy cost."""
    lines = [header, ""]
    sets = list(dict.fromkeys(name for r in records for name in r["sets"]))
    kinds = (
        ("curves", "threshold found again at FMR {fmr:g} on the pairs left"),
        ("fixed_threshold_curves", "threshold fixed at FMR {fmr:g} on all pairs (ISO/IEC 29794-1)"),
    )
    for name in sets:
        for key, how in kinds:
            scores = list(dict.fromkeys(s for r in records for s in r["sets"].get(name, {}).get(key, {})))
            if not scores:
                continue
            lines += [
                f"### {name}: error-versus-reject area, mean FNMR (%) over 0-40% of images rejected, "
                f"{how.format(fmr=FMR)}; lower is better; (in brackets: the area over random rejection's, the mean "
                "of the per-seed ratios)",
                "",
                "| method | accuracy (%) | FNMR at 0% | " + " | ".join(f"area {s}" for s in scores) + " |",
                "|---|---|---|" + "---|" * len(scores),
            ]
            for method in METHODS:
                runs = [r for r in records if r["method"] == method and key in r["sets"].get(name, {})]
                if not runs:
                    continue
                row = [f"{method} ({len(runs)} seeds)", _mean_std([r["sets"][name]["accuracy"] for r in runs])]
                row.append(_mean_std([r["sets"][name][key]["random"]["fnmr"][0] for r in runs]))
                for score in scores:
                    pairs = [
                        (r["sets"][name][key][score]["area"], r["sets"][name][key]["random"]["area"])
                        for r in runs
                        if score in r["sets"][name][key]
                    ]
                    ratio = np.mean([a / b for a, b in pairs]) if pairs else np.nan
                    cell = f"{_mean_std([a for a, _ in pairs])} ({ratio:.2f})" if pairs else ""
                    row.append(cell if score != "random" else _mean_std([a for a, _ in pairs]))
                lines.append("| " + " | ".join(row) + " |")
            lines.append("")
    lines += ["### Does RI training change verification accuracy? (arcface+ri - arcface, paired by seed, points)", ""]
    lines += ["| set | difference (mean +- std) | per seed |", "|---|---|---|"]
    base = {r["seed"]: r for r in records if r["method"] == "arcface"}
    for name in sets:
        diffs = [
            (r["seed"], r["sets"][name]["accuracy"] - base[r["seed"]]["sets"][name]["accuracy"])
            for r in records
            if r["method"] == "arcface+ri" and r["seed"] in base and name in r["sets"]
        ]
        if diffs:
            per_seed = ", ".join(f"seed {s}: {100 * d:+.2f}" for s, d in sorted(diffs))
            lines.append(f"| {name} | {_mean_std([d for _, d in diffs])} | {per_seed} |")
    return "\n".join(lines)


def plot(records: list[dict], results: Path) -> list[Path]:
    """erc_<set>.png: the mean curve over seeds of each (method, score), and random rejection and the oracle."""
    from recipes.arcface_torch.evaluation.plots import plot_error_versus_reject

    written = []
    sets = list(dict.fromkeys(name for r in records for name in r["sets"]))
    for name in sets:
        curves = {}
        for method in METHODS:
            runs = [r for r in records if r["method"] == method and name in r["sets"]]
            if not runs:
                continue
            for score in runs[0]["sets"][name]["curves"]:
                if score in ("random", "oracle") and method != "arcface":
                    continue
                label = score if score in ("random", "oracle") else f"{method}: {score}"
                curve = [r["sets"][name]["curves"][score] for r in runs]
                curves[label] = (curve[0]["fractions"], np.mean([c["fnmr"] for c in curve], axis=0))
        if "oracle" in curves:
            curves["oracle (arcface)"] = curves.pop("oracle")
        if "random" in curves:  # drawn last, dashed
            curves["random (arcface)"] = curves.pop("random")
        path = results / f"erc_{name}.png"
        plot_error_versus_reject(curves, path, title=f"{name}: error versus reject, mean of seeds", fmr=FMR)
        written.append(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--bin", action="append", default=[], help="an insightface .bin scored too (e.g. LFW)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--runs", default="/work/scratch/quality_study", help="folder for the training runs")
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results/quality_study"))
    parser.add_argument("--no-run", action="store_true", help="only summarise the runs that finished")
    parser.add_argument(
        "--rescore", action="store_true", help="score finished runs again where --bin sets or current scores lack"
    )
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    parser.add_argument("--score-again", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        return run_one(Path(args.run_one))
    if args.score_again:
        return score_again(Path(args.score_again))
    for path in args.bin:
        if not Path(path).is_file():
            print(f"error: --bin {path} does not exist; pass an insightface .bin such as lfw.bin", file=sys.stderr)
            return 1
    from recipes.arcface_torch.train import nest, parse_override

    extra = nest(parse_override(item) for item in args.set)
    plan = []
    for seed in args.seeds:  # seed-major: a run cut short still holds whole seeds
        for method in args.methods:
            overrides = json.loads(json.dumps(BASE))
            overrides.update(METHODS[method])
            for key, value in extra.items():
                overrides[key] = {**overrides[key], **value} if isinstance(value, dict) and key in overrides else value
            overrides["seed"] = 2048 + seed
            overrides["synthetic"] = {**overrides["synthetic"], "seed": seed}
            overrides["output"] = str(Path(args.runs) / f"{method}_seed{seed}")
            overrides["resume"] = False
            cache = str(Path(args.runs) / f"test_sets_seed{seed}.npz")
            entry = {"config": CONFIG, "method": method, "seed": seed, "overrides": overrides, "bins": args.bin}
            entry["cache"] = cache
            plan.append({**entry, "run_dir": overrides["output"]})
    started = time.time()
    if not args.no_run:
        launch(plan, args.jobs, rescore=args.rescore)
    records = [
        json.loads((Path(e["run_dir"]) / "result.json").read_text())
        for e in plan
        if (Path(e["run_dir"]) / "result.json").is_file()
    ]
    if not records:
        print("error: no run finished; see the stdout.log files in " + args.runs, file=sys.stderr)
        return 1
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    minutes = np.mean([r["train_seconds"] for r in records]) / 60
    command = (
        "python benchmarks/quality_study.py"
        + (f" --seeds {' '.join(map(str, args.seeds))}")
        + "".join(f" --bin {b}" for b in args.bin)
        + "".join(f" --set {item}" for item in args.set)
    )
    header = (
        f"`{command}` | config {CONFIG} + {json.dumps(BASE)} | {len(records)} of {len(plan)} runs finished, "
        f"{args.jobs} at a time on {os.cpu_count()} CPU cores, mean train time per run {minutes:.1f} min"
        + (f", wall time of this invocation {(time.time() - started) / 60:.0f} min" if not args.no_run else "")
    )
    write_bytes_atomically(results / "study.md", (summarise(records, header) + "\n").encode())
    write_bytes_atomically(results / "study.json", json.dumps(records).encode())
    written = plot(records, results)
    print(f"wrote {results / 'study.md'}, {results / 'study.json'} and {len(written)} plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
