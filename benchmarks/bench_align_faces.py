"""Where unpg-align-faces spends its time per photo, and how its throughput scales with worker processes.

Part 1 (one process, one OpenCV thread): each stage of photo_alignment.align_photo timed on the same photos --
read the file, decode, detect (YuNet, scaled to --detection-size), choose + align (similarity warp), encode (JPEG q95)
and write (atomic rename, no fsync, as the tool writes faces) -- as ms per photo and share of the whole, and beside
them the same write with an fsync per file.
Part 2: align_folder on the same photos into a fresh folder with 1 process and with each --workers count, the
counts alternating over --rounds so all see the same machine load; photos/s (median), the ratio to 1 process,
and photos/s per process. Worker start-up (spawn, imports) is inside the timing, as a user pays it.

The photos are the first --limit of the folder (identity sub-folders, as for the tool); research photo sets stay
outside the repository. Numbers depend on the photo size (LFW's are 250x250) and on the machine's load.

    python benchmarks/bench_align_faces.py /work/scratch/lfw_raw/data/lfw-deepfunneled \\
        --yunet ../shared/models/face_detection_yunet.onnx --limit 600 --workers 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def subset_folder(photos: Path, limit: int, into: Path) -> Path:
    """A folder of links to the first `limit` photos (sorted identity order), so both parts see the same ones."""
    from recipes.arcface_torch.photo_alignment import list_photos

    for relative in list_photos(photos)[:limit]:
        link = into / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((photos / relative).resolve())
    return into


def stage_times(root: Path, spec, settings) -> dict[str, list[float]]:
    import cv2
    import numpy as np

    from recipes.arcface_torch.atomic_file import write_bytes_atomically
    from recipes.arcface_torch.face_detection import choose_face, open_detector
    from recipes.arcface_torch.face_image import align_face
    from recipes.arcface_torch.photo_alignment import _encode, list_photos

    cv2.setNumThreads(1)
    detector = open_detector(spec)
    stages = ("read", "decode", "detect", "align", "encode", "write")
    times: dict[str, list[float]] = {name: [] for name in stages}
    durable: list[float] = []
    cpu = 0.0
    with tempfile.TemporaryDirectory() as out:
        for index, relative in enumerate(list_photos(root)):
            cpu_start = time.process_time()
            clock = [time.perf_counter()]
            data = (root / relative).read_bytes()
            clock.append(time.perf_counter())
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            clock.append(time.perf_counter())
            faces = detector.detect(image)
            clock.append(time.perf_counter())
            chosen, _ = choose_face(faces, image.shape, settings.choose, settings.min_size)
            if chosen is None:
                continue
            face = align_face(image, chosen.landmarks, settings.size)
            clock.append(time.perf_counter())
            encoded = _encode(face, settings)
            clock.append(time.perf_counter())
            write_bytes_atomically(Path(out) / f"{index}.jpg", encoded, durable=False)  # as the tool writes
            clock.append(time.perf_counter())
            cpu += time.process_time() - cpu_start
            for name, start, end in zip(times, clock[:-1], clock[1:], strict=True):
                times[name].append(end - start)
            start = time.perf_counter()
            write_bytes_atomically(Path(out) / f"{index}_durable.jpg", encoded)  # with an fsync, for comparison
            durable.append(time.perf_counter() - start)
    return times, durable, cpu


def throughput(root: Path, spec, settings, workers: int) -> float:
    from recipes.arcface_torch.photo_alignment import align_folder

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = align_folder(root, Path(out) / "aligned", spec, settings, workers=workers)
        return summary["processed"] / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path, help="folder with one sub-folder of photos per identity")
    parser.add_argument("--yunet", type=Path, required=True, help="YuNet ONNX model")
    parser.add_argument("--limit", type=int, default=600, help="photos to time")
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="process counts to compare with 1")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of part 2 (0: part 1 only)")
    parser.add_argument("--detection-size", type=int, default=640)
    args = parser.parse_args(argv)

    from recipes.arcface_torch.face_detection import DetectorSpec
    from recipes.arcface_torch.photo_alignment import AlignSettings

    spec = DetectorSpec("yunet", str(args.yunet), detection_side=args.detection_size)
    settings = AlignSettings()
    with tempfile.TemporaryDirectory() as scratch:
        root = subset_folder(args.photos, args.limit, Path(scratch) / "photos")
        times, durable, cpu = stage_times(root, spec, settings)
        count = len(times["read"])
        total = sum(sum(values) for values in times.values())
        print(f"part 1: stages of one photo, {count} photos aligned in one process (OpenCV 1 thread)")
        print(f"{'stage':<10}{'ms/photo (mean)':>18}{'share':>10}")
        for name, values in times.items():
            print(f"{name:<10}{1e3 * sum(values) / count:>18.2f}{sum(values) / total:>10.1%}")
        print(f"{'all':<10}{1e3 * total / count:>18.2f}{1:>10.0%}   = {count / total:.0f} photos/s per core")
        write = sum(times["write"])
        print(
            f"(write with an fsync per face instead: {1e3 * sum(durable) / count:.2f} ms/photo, "
            f"{sum(durable) / write:.1f}x the rename-only write)"
        )
        print(
            f"CPU time of the whole: {1e3 * cpu / count:.2f} ms/photo = {count / cpu:.0f} photos/s per busy core "
            f"(wall time above includes waiting for a core and for the disk)\n"
        )
        if args.rounds < 1:
            return 0

        counts = [1] + [value for value in args.workers if value != 1]
        speeds: dict[int, list[float]] = {value: [] for value in counts}
        for round_index in range(args.rounds):
            order = counts if round_index % 2 == 0 else counts[::-1]
            for value in order:
                speeds[value].append(throughput(root, spec, settings, value))
        base = statistics.median(speeds[1])
        print(f"part 2: align_folder on the same {args.limit} photos, median of {args.rounds} alternating rounds")
        print(f"{'processes':<11}{'photos/s':>10}{'ratio to 1':>12}{'photos/s per process':>23}")
        for value in counts:
            median = statistics.median(speeds[value])
            print(f"{value:<11}{median:>10.1f}{median / base:>12.2f}{median / value:>23.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
