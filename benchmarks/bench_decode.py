"""Decode throughput of RecordIOFaces vs ImageFolderFaces over the same generated faces.

Writes N textured 112x112 JPEGs (identity-per-folder), packs them with tools/pack_rec.py, then reads
both datasets through a DataLoader (shuffled, batch 64) for each worker count, alternating the two
datasets round by round so both see the same machine load. Worker start-up is excluded (timing starts
after the first batch); the table shows the median over rounds. Files sit in the page cache, so this
measures decode + framing overhead, not disk speed.

    python benchmarks/bench_decode.py                       # 2000 images, workers 1 and 2, 3 rounds
    python benchmarks/bench_decode.py --images 4000 --workers 1 2 4 --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from recipes.arcface_torch.datasets.image_folder_faces import ImageFolderFaces
from recipes.arcface_torch.datasets.recordio_faces import RecordIOFaces
from tools.pack_rec import pack_folder


def write_faces(root: Path, images: int, per_identity: int = 20, seed: int = 0) -> None:
    """Textured 112x112 JPEGs (quality 95, a few KB each, like aligned MS1M faces)."""
    rng = np.random.default_rng(seed)
    for index in tqdm(range(images), desc="writing images", unit="img"):
        folder = root / f"id{index // per_identity:05d}"
        folder.mkdir(exist_ok=True)
        coarse = cv2.resize(rng.integers(0, 256, (14, 14, 3), dtype=np.uint8), (112, 112), interpolation=cv2.INTER_CUBIC)
        image = np.clip(coarse.astype(np.int16) + rng.integers(-12, 13, coarse.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{index:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])


def images_per_second(dataset, workers: int, batch_size: int, seed: int) -> float:
    """Images/s over one shuffled epoch, not counting the first batch (worker start-up)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(seed))
    iterator = iter(loader)
    next(iterator)
    count, start = 0, time.perf_counter()
    for images, _ in iterator:
        count += images.shape[0]
    return count / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="number of generated faces (default 2000)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="DataLoader worker counts (default 1 2)")
    parser.add_argument("--rounds", type=int, default=3, help="epochs per setting; the median is shown (default 3)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    if args.images < 2 * args.batch_size or min(args.workers) < 1 or args.rounds < 1:
        print(f"error: need --images >= 2 x --batch-size ({2 * args.batch_size}), --workers >= 1 and --rounds >= 1",
              file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as temp:
        folder, packed = Path(temp) / "folder", Path(temp) / "rec"
        folder.mkdir()
        write_faces(folder, args.images)
        pack_folder(folder, packed)
        datasets = {"RecordIOFaces": RecordIOFaces(packed), "ImageFolderFaces": ImageFolderFaces(folder)}
        rec_bytes = (packed / "train.rec").stat().st_size
        results = {}
        for workers in args.workers:
            runs = {name: [] for name in datasets}
            for round_index in tqdm(range(args.rounds), desc=f"{workers} worker(s)", unit="round"):
                for name, dataset in datasets.items():
                    runs[name].append(images_per_second(dataset, workers, args.batch_size, seed=round_index))
            results[workers] = {name: statistics.median(values) for name, values in runs.items()}
    print(f"\n{args.images} faces 112x112 JPEG q95, train.rec {rec_bytes / args.images / 1024:.1f} KiB/image, "
          f"batch {args.batch_size}, shuffled, median of {args.rounds} epochs")
    print(f"{'workers':>7} | {'RecordIOFaces img/s':>19} | {'ImageFolderFaces img/s':>22} | {'rec / folder':>12}")
    print(f"{'-' * 7}-+-{'-' * 19}-+-{'-' * 22}-+-{'-' * 12}")
    for workers, row in results.items():
        rec, img = row["RecordIOFaces"], row["ImageFolderFaces"]
        print(f"{workers:>7} | {rec:>19.0f} | {img:>22.0f} | {rec / img:>11.2f}x")
    if len(results) > 1:
        first, last = min(results), max(results)
        for name in datasets:
            print(f"{name}: {last} vs {first} worker(s) = {results[last][name] / results[first][name]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
