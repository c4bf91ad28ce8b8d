"""Score face images with a trained model's quality scores (RI, the ERS distance to the unrecognisable-identity
centre, the embedding norm); judge the scores with error-versus-reject curves on a .bin.

    python tools/face_quality.py work_dirs/synthetic_ri faces/ --csv scores.csv
    python tools/face_quality.py work_dirs/synthetic_ri lfw.bin --erc erc.png --fmr 1e-2
    python tools/face_quality.py work_dirs/synthetic_arcface train_faces/ --build-centre

MODEL is a training output folder (model.pt, config.json, recognisability.pt) or a model.pt. INPUT is any mix
of face images, folders of them (flat or one sub-folder per identity), RecordIO folders and insightface .bin
files; faces are aligned crops, resized to 112x112 when they have another size. Scores, higher = more recognisable: ri (needs a model trained
with the "ri" loss), ers = 1 - cos(embedding, centre) (needs the centre: saved by "ri" training, or built for
any model from faces with --build-centre, which shrinks each face to 8x8 pixels, blurs it and averages the
unit embeddings), norm = |embedding| (MagFace's quality). --erc (for .bin inputs) rejects the lowest-quality
0-40% of the images, recomputes FNMR at --fmr on the pairs left (--fixed-threshold: at the threshold of --fmr on
all pairs, ISO/IEC 29794-1's form, which counts only false non-matches), and plots one curve per
score beside random rejection; the table gives each curve's area (mean FNMR over the range, lower is better).
Ends with one line saying what was written; exits 1 with one line on any error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from recipes.arcface_torch.cli.common import fail, force_argument, warn_deprecated_overwrite

SHOW_ROWS = 40  # images listed one per line before the report switches to a summary


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="training output folder or model.pt")
    parser.add_argument("inputs", nargs="+", help="face images, folders of face images, or .bin files")
    parser.add_argument("--centre", help="recognisability file (default: recognisability.pt beside model.pt)")
    parser.add_argument("--scores", help="comma-separated subset of ri,ers,norm (default: every score the model has)")
    parser.add_argument("--network", help="backbone name (default: from config.json)")
    parser.add_argument("--embedding-size", type=int, help="embedding size (default: from config.json)")
    parser.add_argument(
        "--build-centre",
        action="store_true",
        help="build the unrecognisable-identity centre from the INPUT faces and write it (instead of scoring)",
    )
    parser.add_argument("--erc", help="write error-versus-reject curves of the .bin input to this PNG")
    parser.add_argument("--fmr", type=float, default=1e-2, help="FMR the --erc FNMR is read at (default 1e-2)")
    parser.add_argument(
        "--fixed-threshold", action="store_true", help="--erc: keep the threshold of --fmr on all pairs (ISO form)"
    )
    parser.add_argument("--csv", help="write every image's scores to this CSV file")
    parser.add_argument("--json", action="store_true", help="print a JSON report instead of the text one")
    force_argument(parser, "replace an existing --csv, --erc or centre file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


class UsageError(ValueError):
    """Bad arguments or inputs; the message says how to fix them."""


def _argument_error(args) -> str | None:
    if args.scores is not None:
        names = [name.strip() for name in args.scores.split(",") if name.strip()]
        bad = [name for name in names if name not in ("ri", "ers", "norm")]
        if bad or not names:
            return f"--scores {args.scores!r} must list some of ri, ers, norm, e.g. --scores ers,norm"
    if not 0 < args.fmr < 1:
        return f"--fmr {args.fmr} must be in (0, 1), e.g. 1e-3"
    if args.embedding_size is not None and args.embedding_size <= 0:
        return f"--embedding-size {args.embedding_size} is not positive; pass e.g. 512"
    if args.build_centre and (args.erc or args.csv or args.scores):
        return "--build-centre writes a centre and scores nothing; run again without it to score (--erc, --csv)"
    for path in (args.csv, args.erc):
        if path and Path(path).exists() and not args.force:
            return f"{path} already exists; pass --force to replace it"
    if args.erc and not args.erc.endswith(".png"):
        return f"--erc {args.erc} must name a .png file"
    return None


def read_inputs(inputs: list[str]):
    """(names, uint8 (N, 112, 112, 3) RGB faces, [(path, VerificationSet)] of the .bin inputs); folders, RecordIO
    folders and .bin files go through face_sources (the one face reader of every tool), single images are read here."""
    import cv2
    import numpy as np

    from recipes.arcface_torch.evaluation.bin_file import load_bin
    from recipes.arcface_torch.face_files import IMAGE_SUFFIXES
    from recipes.arcface_torch.face_sources import read_faces

    names, parts, bins = [], [], []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise UsageError(f"input {path} does not exist; pass face images, folders of them, a RecordIO or a .bin")
        if path.is_file() and path.suffix.lower() == ".bin":
            vset = load_bin(path)
            bins.append((path, vset))
            names += [f"{path}#{index}" for index in range(vset.images.shape[0])]
            parts.append(vset.images)
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise UsageError(f"cannot decode {path}; re-encode it or remove it from the input")
            if image.shape[:2] != (112, 112):
                shrink = image.shape[0] > 112
                image = cv2.resize(image, (112, 112), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            names.append(str(path))
            parts.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)[None])
        else:
            found, faces = read_faces(path, size=112)  # BGR
            names += [f"{path}/{name}" for name in found]
            parts.append(np.ascontiguousarray(faces[..., ::-1]))
    return names, np.concatenate(parts), bins


def _centre_backbone(args, model_arg: Path):
    """(backbone, target file) for --build-centre, checked before any face is read."""
    from recipes.arcface_torch.export.backbone_checkpoint import build_backbone, resolve_checkpoint
    from recipes.arcface_torch.face_quality import check_fp32
    from recipes.arcface_torch.recognisability_file import recognisability_path

    source = resolve_checkpoint(model_arg)
    state = source.state_dict()
    check_fp32(state, source.model_path)
    backbone = build_backbone(source.network(args.network), source.embedding_size(args.embedding_size), state)
    target = Path(args.centre) if args.centre else recognisability_path(source.model_path)
    if target.exists() and not args.force:
        raise UsageError(
            f"{target} already exists (it may hold the RI regressor of 'ri' training); pass --force to replace it"
        )
    return backbone, target


def _build_centre(backbone, target: Path, faces, names: str) -> str:
    from recipes.arcface_torch.recognisability_file import Recognisability, save_recognisability
    from recipes.arcface_torch.unrecognisable_faces import centre_of_faces

    centre = centre_of_faces(backbone, faces)
    save_recognisability(Recognisability(centre=centre, source=f"built from {len(faces)} faces of {names}"), target)
    return f"wrote {target} (unrecognisable-identity centre of {len(faces)} faces, {centre.numel()}-d)"


def _write_csv(path: Path, names: list[str], scores: dict) -> None:
    from recipes.arcface_torch.atomic_file import write_bytes_atomically

    lines = ["image," + ",".join(scores)]
    for index, name in enumerate(names):
        lines.append(f"{name}," + ",".join(f"{scores[key][index]:.6f}" for key in scores))
    write_bytes_atomically(path, ("\n".join(lines) + "\n").encode())


def _erc_report(model, vset, args) -> tuple[list[dict], dict]:
    """Error-versus-reject rows of every score and of random rejection on `vset`, the PNG written; and the
    scores of its images (from the unflipped embeddings the pair scores were made of)."""
    import numpy as np

    from recipes.arcface_torch.evaluation.error_versus_reject import error_versus_reject, random_rejection
    from recipes.arcface_torch.evaluation.plots import plot_error_versus_reject
    from recipes.arcface_torch.evaluation.verification import embed_distinct_with_flip, l2_normalize
    from recipes.arcface_torch.face_quality import scores_of_embeddings

    plain, flipped = embed_distinct_with_flip(model.backbone, vset.images)
    unit = l2_normalize(plain + flipped)  # the flip-test embeddings verification uses
    pair_scores = np.sum(unit[0::2] * unit[1::2], axis=1)
    scores = scores_of_embeddings(model, plain)
    threshold = "fixed" if args.fixed_threshold else "refit"
    rows, curves = [], {}
    for name, quality in scores.items():
        curve = error_versus_reject(pair_scores, vset.issame, quality, args.fmr, threshold=threshold)
        curves[name] = (curve.fractions, curve.fnmr)
        rows.append({"score": name, **curve.as_dict()})
    baseline = random_rejection(pair_scores, vset.issame, args.fmr, threshold=threshold)
    curves["random"] = (baseline.fractions, baseline.fnmr)
    rows.append({"score": "random", **baseline.as_dict()})
    plot_error_versus_reject(curves, args.erc, title=f"{vset.name}: error versus reject", fmr=args.fmr)
    return rows, scores


def run(args) -> int:
    import numpy as np

    from recipes.arcface_torch.face_quality import load_quality_model, score_faces

    if args.erc and not any(item.lower().endswith(".bin") for item in args.inputs):
        raise UsageError("--erc needs a .bin input (pairs with same/different labels); add one, e.g. lfw.bin")
    if args.build_centre:
        backbone, target = _centre_backbone(args, Path(args.model))
    else:  # the model, its centre and the scores asked for are checked before any face is read
        scores_wanted = None if args.scores is None else tuple(n.strip() for n in args.scores.split(",") if n.strip())
        model = load_quality_model(
            Path(args.model),
            args.network,
            args.embedding_size,
            Path(args.centre) if args.centre else None,
            scores_wanted,
        )
    names, faces, bins = read_inputs(args.inputs)
    if args.build_centre:
        print(_build_centre(backbone, target, faces, ", ".join(args.inputs)))
        return 0
    erc_rows = []
    if args.erc:  # the first .bin's images are scored from the embeddings its pair scores are made of
        bin_path, vset = bins[0]
        erc_rows, bin_scores = _erc_report(model, vset, args)
        first = names.index(f"{bin_path}#0")
        other = np.concatenate([faces[:first], faces[first + vset.images.shape[0] :]])
        rest = score_faces(model, other)[1] if len(other) else {k: np.empty(0) for k in bin_scores}
        scores = {k: np.concatenate([rest[k][:first], bin_scores[k], rest[k][first:]]) for k in bin_scores}
    else:
        scores = score_faces(model, faces)[1]
    written = []
    if args.csv:
        _write_csv(Path(args.csv), names, scores)
        written.append(f"{args.csv} ({len(names)} images)")
    if args.erc:
        written.append(f"{args.erc} (error versus reject, {len(erc_rows)} curves)")
    summary = {
        name: {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())} for name, v in scores.items()
    }
    if args.json:
        report = {
            "model": args.model,
            "scores": list(scores),
            "images": [{"image": n, **{k: float(scores[k][i]) for k in scores}} for i, n in enumerate(names)],
            "summary": summary,
            "error_versus_reject": erc_rows,
            "written": written,
        }
        print(json.dumps(report, indent=2))
        return 0
    if len(names) <= SHOW_ROWS:
        print("image  " + "  ".join(f"{k:>8}" for k in scores))
        for index, name in enumerate(names):
            print(f"{name}  " + "  ".join(f"{scores[k][index]:8.4f}" for k in scores))
    print(
        f"{len(names)} faces: "
        + "; ".join(f"{k} mean {s['mean']:.4f} (min {s['min']:.4f}, max {s['max']:.4f})" for k, s in summary.items())
    )
    if erc_rows:
        how = "threshold fixed on all pairs" if args.fixed_threshold else "threshold found again on the pairs left"
        print(f"error versus reject on {bins[0][0].name} (FNMR at FMR {args.fmr:g}, {how}):")
        print("  score    FNMR 0%   FNMR 20%  FNMR 40%  area (mean FNMR, lower is better)")
        for row in erc_rows:
            fnmr, fractions = row["fnmr"], row["fractions"]
            at = {round(f, 4): v for f, v in zip(fractions, fnmr, strict=True)}
            print(
                f"  {row['score']:<7} {100 * at[0.0]:8.2f}  {100 * at.get(0.2, float('nan')):8.2f}  "
                f"{100 * at.get(0.4, float('nan')):8.2f}  {100 * row['area']:8.2f}"
            )
    print(
        "wrote " + ", ".join(written) if written else f"scored {len(names)} faces (nothing written; --csv saves them)"
    )
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    warn_deprecated_overwrite(args)
    problem = _argument_error(args)
    if problem:
        return fail(problem)
    from recipes.arcface_torch.checkpoint import CheckpointError

    try:
        return run(args)
    except (UsageError, CheckpointError, ValueError, OSError) as error:
        return fail(error)


if __name__ == "__main__":
    sys.exit(main())
