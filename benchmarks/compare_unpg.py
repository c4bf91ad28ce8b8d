"""Does UNPG do what the paper claims? Train each method on the same data, seeds and steps, and compare.

    python benchmarks/compare_unpg.py                                   # defaults: ~30 min on 2 CPU cores
    python benchmarks/compare_unpg.py --seeds 0 1 2 3 4 --set num_epoch=10 --jobs 4     # bigger
    python benchmarks/compare_unpg.py --config ms1mv3_r50 --set rec=/data/ms1m-retinaface-t1 --jobs 1   # real data

Methods: ArcFace, ArcFace+UNPG, CosFace, CosFace+UNPG, and ArcFace+UNPG with wisk 0.5, 1.0 and no filter
(ArcFace+UNPG is wisk 1.5); NPCFace, USS (on CosFace, from epoch 1), MagFace and MagFace+UNPG, each with
its paper defaults (config.<loss>). For one seed every method sees the same initial weights and data order.
Each run trains with recipes/arcface_torch/train.py's `train` in its own process and then reports:
  - 10-fold verification accuracy (the .bin protocol) on the first val target,
  - TAR at FAR 1e-3 and 1e-4 and the positive/negative similarity overlap: on synthetic data over ALL pairs
    of held-out identities (hundreds of thousands of negatives, so FAR 1e-4 is measurable); on real data
    over the val target's pairs (NaN where it has too few negatives; use tools/eval_ijb.py there).
Outputs in --output: results.md (mean +- std over seeds), results.json, roc.png, loss_curves.png,
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
    "npcface": {"loss": "npcface"},
    "uss": {"loss": "uss", "margin_list": COSFACE},
    "magface": {"loss": "magface"},
    "magface+unpg": {"loss": ["magface", "unpg"], "unpg": {"wisk": 1.5, "filter": True}},
}
FARS = (1e-3, 1e-4)
HELD_OUT_OFFSET = 2_000_000  # identities disjoint from training and from the pair set


def all_pairs_metrics(backbone, synthetic, images_per_identity: int = 4) -> dict:
    """Embed held-out identities with flip; score every pair; TAR@FAR, ROC and pair similarities."""
    from recipes.arcface_torch.datasets.synthetic_faces import SyntheticFaces
    from recipes.arcface_torch.evaluation.plots import similarity_overlap
    from recipes.arcface_torch.evaluation.tar_far import roc_curve, tar_at_far
    from recipes.arcface_torch.evaluation.verification import embed_with_flip, l2_normalize

    faces = SyntheticFaces(synthetic.val_identities, images_per_identity, seed=synthetic.seed,
                           identity_offset=HELD_OUT_OFFSET, flip=False)
    images = np.stack([faces.render(HELD_OUT_OFFSET + i // images_per_identity, i % images_per_identity)
                       for i in range(len(faces))])
    plain, flipped = embed_with_flip(backbone, images)
    embeddings = l2_normalize(plain + flipped)
    identity = np.arange(len(faces)) // images_per_identity
    upper = np.triu_indices(len(faces), k=1)
    scores = (embeddings @ embeddings.T)[upper]
    same = identity[upper[0]] == identity[upper[1]]
    fpr, tpr, _ = roc_curve(scores, same)
    rng = np.random.default_rng(0)
    negatives = scores[~same]
    return {"tar_at_far": {str(k): v for k, v in tar_at_far(scores, same, FARS).items()},
            "overlap": similarity_overlap(scores[same], negatives),
            "roc": [fpr.tolist(), tpr.tolist()],
            "pos": scores[same].tolist(),
            "neg": rng.choice(negatives, size=min(20_000, negatives.size), replace=False).tolist(),
            "pairs": {"positive": int(same.sum()), "negative": int((~same).sum())}}


def run_one(spec_path: Path) -> int:
    """Child process: train one (method, seed), evaluate, write result.json beside the run."""
    import torch

    from recipes.arcface_torch.backbones import get_model
    from recipes.arcface_torch.config import get_config
    from recipes.arcface_torch.train import train

    spec = json.loads(spec_path.read_text())
    cfg = get_config(spec["config"], **spec["overrides"])
    started = time.time()
    result = train(cfg, force=True)  # this harness writes spec.json and stdout.log into the folder first
    train_seconds = time.time() - started
    backbone = get_model(cfg.network, num_features=cfg.embedding_size)
    backbone.load_state_dict(torch.load(Path(cfg.output) / "model.pt", map_location="cpu", weights_only=True))
    target, verification = next(iter(result["verification"].items()))
    record = {"method": spec["method"], "seed": spec["seed"], "target": target, "steps": result["step"],
              "train_seconds": train_seconds, "accuracy": verification["accuracy"],
              "loss_history": result["loss_history"]}
    if cfg.rec == "synthetic":
        record.update(all_pairs_metrics(backbone, cfg.synthetic))
    else:
        from recipes.arcface_torch.evaluation.plots import similarity_overlap

        pos, neg = verification["positive_similarities"], verification["negative_similarities"]
        record.update(tar_at_far={str(k): v for k, v in verification["tar_at_far"].items()},
                      overlap=similarity_overlap(pos, neg), pos=list(map(float, pos)), neg=list(map(float, neg)), roc=None)
    write_bytes_atomically(spec_path.parent / "result.json", json.dumps(record).encode())
    return 0


def mean_std(values) -> str:
    values = np.asarray(values, dtype=float)
    if np.isnan(values).all():
        return "n/a"
    return f"{np.nanmean(values) * 100:.2f} +- {np.nanstd(values) * 100:.2f}"


def summarise(records: list[dict], methods: list[str], output: Path, header: str) -> str:
    from recipes.arcface_torch.evaluation.plots import plot_loss_curves, plot_roc, plot_similarity_histograms

    lines = [header, "", "| method | verification acc (%) | TAR@FAR=1e-3 (%) | TAR@FAR=1e-4 (%) | pos/neg overlap (%) | train time (s) |",
             "|---|---|---|---|---|---|"]
    curves, rocs = {}, {}
    for method in methods:
        runs = sorted((r for r in records if r["method"] == method), key=lambda r: r["seed"])
        if not runs:
            continue
        lines.append(f"| {method} | {mean_std([r['accuracy'] for r in runs])} | "
                     f"{mean_std([r['tar_at_far'][str(FARS[0])] for r in runs])} | "
                     f"{mean_std([r['tar_at_far'][str(FARS[1])] for r in runs])} | "
                     f"{mean_std([r['overlap'] for r in runs])} | {np.mean([r['train_seconds'] for r in runs]):.0f} |")
        steps = [s for s, _ in runs[0]["loss_history"]]
        losses = np.mean([[v for _, v in r["loss_history"]] for r in runs], axis=0)
        curves[method] = (steps, losses.tolist())
        if runs[0].get("roc"):
            rocs[method] = tuple(runs[0]["roc"])
        plot_similarity_histograms(runs[0]["pos"], runs[0]["neg"], output / f"similarity_{method}.png",
                                   title=f"{method} (seed {runs[0]['seed']})")
    plot_loss_curves(curves, output / "loss_curves.png")
    if rocs:
        plot_roc(rocs, output / "roc.png", title="Held-out identities, all pairs")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="synthetic_compare", help="base config for every run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (each gets cores / jobs threads)")
    parser.add_argument("--output", default="work_dirs/compare_unpg")
    parser.add_argument("--run-one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        return run_one(args.run_one)

    from recipes.arcface_torch.config import ConfigError, get_config
    from recipes.arcface_torch.train import nest, parse_override

    try:
        common = nest(parse_override(item) for item in args.set)
        get_config(args.config, **common)  # fail fast on a bad config or override
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.jobs < 1:
        print(f"error: --jobs {args.jobs} must be >= 1", file=sys.stderr)
        return 1
    output = Path(args.output)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}

    def launch(method: str, seed: int) -> tuple[str, int, int]:
        run_dir = output / "runs" / f"{method}_seed{seed}"
        if (run_dir / "result.json").is_file():
            return method, seed, 0
        run_dir.mkdir(parents=True, exist_ok=True)
        overrides = {**common, **METHODS[method], "seed": seed, "output": str(run_dir), "resume": False}
        (run_dir / "spec.json").write_text(json.dumps({"config": args.config, "method": method, "seed": seed,
                                                       "overrides": overrides}))
        with open(run_dir / "stdout.log", "w") as log:
            code = subprocess.run([sys.executable, __file__, "--run-one", str(run_dir / "spec.json")], cwd=ROOT,
                                  env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        print(f"{method} seed {seed}: {'done' if code == 0 else f'FAILED (exit {code}, see {run_dir}/stdout.log)'}", flush=True)
        return method, seed, code

    started = time.time()
    plan = [(method, seed) for seed in args.seeds for method in args.methods]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        outcomes = list(pool.map(lambda job: launch(*job), plan))
    failed = [(m, s) for m, s, code in outcomes if code != 0]
    records = [json.loads((output / "runs" / f"{m}_seed{s}" / "result.json").read_text())
               for m, s, code in outcomes if code == 0]
    wall = time.time() - started
    header = (f"{args.config} {' '.join(args.set)} | seeds {args.seeds} | {len(records)} runs, {args.jobs} in parallel, "
              f"{os.cpu_count()} CPU cores | wall time {wall / 60:.1f} min")
    table = summarise(records, args.methods, output, header)
    (output / "results.md").write_text(table + "\n")
    (output / "results.json").write_text(json.dumps(
        [{k: v for k, v in r.items() if k not in ("pos", "neg", "roc")} for r in records]))
    print(table)
    if failed:
        print(f"error: {len(failed)} run(s) failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
