"""Data path speed: the raw OpenCV decode ceiling vs what one DataLoader worker delivers from RecordIO.

Writes N textured 112x112 JPEGs (quality 95, a few KB each, like aligned MS1M faces), packs them with
tools/pack_rec.py, then measures in one run, round by round so every row sees the same machine load:

  ceiling         cv2.imdecode of the JPEG bytes already in memory, this process, one thread, nothing else;
  decode floor    one worker that reads and decodes every face of a batch and sends back nothing but the
                  labels (a NumPy array): what any worker path costs at least (DataLoader machinery included);
  per item        one worker, RecordIOFaces.__getitem__ per face + default collate (the former loader);
  FaceBatches f32 one worker, each face decoded and normalised into one shared float32 batch;
  FaceBatches u8  one worker, uint8 (n, H, W, 3) batch shared, normalised in this process by
                  NormalisedBatches: a fresh shared batch each time (pool=0), and the pooled buffers the
                  worker reuses once released (what datasets/build.py builds);
and, in this process, the CPU time of each stage of one face. Loader rates are the steady state after
5 batches (worker start-up and first copy-on-write faults excluded), each epoch drawing --epoch-passes x
the images: images per wall second, per CPU second of the worker (from /proc, Linux: on a shared machine
CPU time is what a worker costs a core, and wall time depends on the neighbours), and this process's CPU
per image, since moving work here is not free. Medians over rounds, with min-max. The .rec sits in the
page cache, so this is decode and copy cost, not disk speed.

    python benchmarks/bench_decode.py                          # 2000 images, batch 64, 5 rounds
    python benchmarks/bench_decode.py --images 4000 --batch-size 128 --rounds 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, default_collate
from tqdm import tqdm

from recipes.arcface_torch.datasets.face_batches import FaceBatches, NormalisedBatches
from recipes.arcface_torch.datasets.recordio import unpack_record
from recipes.arcface_torch.datasets.recordio_faces import RecordIOFaces
from recipes.arcface_torch.datasets.recordio_packing import pack_folder
from recipes.arcface_torch.face_image import decode_face, face_into, face_pixels_into, face_to_tensor, normalise_faces


def write_faces(root: Path, images: int, per_identity: int = 20, seed: int = 0) -> None:
    """Textured 112x112 JPEGs (quality 95, a few KB each, like aligned MS1M faces)."""
    rng = np.random.default_rng(seed)
    for index in tqdm(range(images), desc="writing images", unit="img"):
        folder = root / f"id{index // per_identity:05d}"
        folder.mkdir(exist_ok=True)
        coarse = cv2.resize(
            rng.integers(0, 256, (14, 14, 3), dtype=np.uint8), (112, 112), interpolation=cv2.INTER_CUBIC
        )
        image = np.clip(coarse.astype(np.int16) + rng.integers(-12, 13, coarse.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{index:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])


def raw_decode(bodies: list[bytes]) -> dict[str, float]:
    """cv2.imdecode alone on this process's one OpenCV thread: img per wall second and per CPU second."""
    wall, cpu = time.perf_counter(), time.process_time()
    for body in bodies:
        cv2.imdecode(np.frombuffer(body, dtype=np.uint8), cv2.IMREAD_COLOR)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall": len(bodies) / wall, "cpu": len(bodies) / cpu, "main us": 0.0}


def worker_cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc (Linux), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loader_run(loader: DataLoader, warmup_batches: int, wrap=None) -> dict[str, float]:
    """Steady state of a 1-worker loader: after `warmup_batches` (worker start-up, first copy-on-write
    faults), img per wall second, img per worker CPU second and training-process CPU us per face
    (`wrap` turns the loader's iterator into what the training process iterates, e.g. NormalisedBatches)."""
    iterator = iter(loader)
    batches = iter(wrap(iterator)) if wrap else iterator
    for _ in range(warmup_batches):
        next(batches)
    pid = iterator._workers[0].pid  # benchmark-only peek at the worker process
    worker, main, wall = worker_cpu_seconds(pid), time.process_time(), time.perf_counter()
    count = 0
    for _ in range(len(loader) - warmup_batches):
        count += next(batches)[0].shape[0]
    worker, main, wall = worker_cpu_seconds(pid) - worker, time.process_time() - main, time.perf_counter() - wall
    del batches, iterator
    return {"wall": count / wall, "cpu": count / worker, "main us": 1e6 * main / count}


class DecodeFloor(torch.utils.data.Dataset):
    """Item = list of indices -> their labels, after reading and decoding every face (pixels dropped)."""

    def __init__(self, dataset: RecordIOFaces):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices):
        labels = []
        for index in indices:
            data, label, _, _ = self.dataset.encoded_face(int(index))
            cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
            labels.append(label)
        return np.array(labels), None


def decode_floor_loader(dataset, batch_size: int, seed: int, samples: int) -> DataLoader:
    order = RandomSampler(dataset, num_samples=samples, generator=torch.Generator().manual_seed(seed))
    return DataLoader(
        DecodeFloor(dataset),
        batch_size=None,
        num_workers=1,
        sampler=BatchSampler(order, batch_size, drop_last=True),
        collate_fn=FaceBatches.collate,
    )


def per_item_loader(dataset, batch_size: int, seed: int, samples: int) -> DataLoader:
    order = RandomSampler(dataset, num_samples=samples, generator=torch.Generator().manual_seed(seed))
    return DataLoader(dataset, batch_size=batch_size, sampler=order, num_workers=1, drop_last=True)


def batched_loader(dataset, batch_size: int, seed: int, samples: int, normalise: bool, pool: int = 4) -> DataLoader:
    order = RandomSampler(dataset, num_samples=samples, generator=torch.Generator().manual_seed(seed))
    return DataLoader(
        FaceBatches(dataset, normalise=normalise, pool=pool),
        batch_size=None,
        num_workers=1,
        sampler=BatchSampler(order, batch_size, drop_last=True),
        collate_fn=FaceBatches.collate,
    )


def stage_times(dataset: RecordIOFaces, batch_size: int) -> dict[str, float]:
    """CPU microseconds per face of each stage, in this process (one thread)."""
    keys = [int(k) for k in dataset.keys]
    times = {}
    start = time.process_time()
    bodies = [unpack_record(dataset.reader.read(key))[1] for key in keys]
    times["read + unpack record"] = time.process_time() - start
    start = time.process_time()
    images = [decode_face(body, "bench", dataset.image_size) for body in bodies]
    times["decode_face (imdecode to RGB)"] = time.process_time() - start
    flips = [index % 2 == 0 for index in range(len(images))]
    start = time.process_time()
    tensors = [face_to_tensor(image, flip) for image, flip in zip(images, flips, strict=False)]
    times["face_to_tensor (flip half, normalise, new tensor)"] = time.process_time() - start
    labels = [torch.tensor(0)] * len(tensors)
    start = time.process_time()
    for first in range(0, len(tensors) - batch_size + 1, batch_size):
        default_collate(
            list(zip(tensors[first : first + batch_size], labels[first : first + batch_size], strict=False))
        )
    times["default collate (stack into a new batch)"] = time.process_time() - start
    batch = np.empty((batch_size, 3) + tuple(dataset.image_size), dtype=np.float32)
    start = time.process_time()
    for index, (image, flip) in enumerate(zip(images, flips, strict=False)):
        face_into(image, flip, batch[index % batch_size])
    times["face_into (flip half, normalise into the batch)"] = time.process_time() - start
    pixels = torch.empty((batch_size,) + tuple(dataset.image_size) + (3,), dtype=torch.uint8)
    start = time.process_time()
    for first in range(0, len(images) - batch_size + 1, batch_size):
        for index in range(batch_size):
            face_pixels_into(images[first + index], flips[first + index], pixels[index].numpy())
    times["face_pixels_into (flip half, uint8 into the batch)"] = time.process_time() - start
    start = time.process_time()
    for _first in range(0, len(images) - batch_size + 1, batch_size):
        normalise_faces(pixels)
    times["normalise_faces (training process, 1 thread)"] = time.process_time() - start
    return {name: 1e6 * seconds / len(keys) for name, seconds in times.items()}


def spread(values: list[float], digits: int = 0) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="number of generated faces (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are shown (default 5)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--epoch-passes",
        type=int,
        default=3,
        help="each loader epoch draws this many times the images, so start-up is a small part (default 3)",
    )
    args = parser.parse_args(argv)
    if args.images < 4 * args.batch_size or args.rounds < 1 or args.batch_size < 1:
        print(
            f"error: need --images >= 4 x --batch-size ({4 * args.batch_size}), --batch-size >= 1 and --rounds >= 1",
            file=sys.stderr,
        )
        return 1
    cv2.setNumThreads(1)  # one OpenCV thread, as build_train_loader sets for the workers
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as temp:
        folder, packed = Path(temp) / "folder", Path(temp) / "rec"
        folder.mkdir()
        write_faces(folder, args.images)
        pack_folder(folder, packed)
        dataset = RecordIOFaces(packed)
        bodies = [unpack_record(dataset.reader.read(int(key)))[1] for key in dataset.keys]
        kib = sum(len(body) for body in bodies) / len(bodies) / 1024
        samples, warmup = args.epoch_passes * len(dataset), 5
        paths = {
            "raw cv2.imdecode, 1 thread (ceiling)": lambda seed: raw_decode(bodies),
            "1 worker, read + imdecode only (decode floor)": lambda seed: loader_run(
                decode_floor_loader(dataset, args.batch_size, seed, samples), warmup
            ),
            "1 worker, per-item __getitem__ + collate": lambda seed: loader_run(
                per_item_loader(dataset, args.batch_size, seed, samples), warmup
            ),
            "1 worker, FaceBatches float32": lambda seed: loader_run(
                batched_loader(dataset, args.batch_size, seed, samples, normalise=True), warmup
            ),
            "1 worker, FaceBatches uint8, fresh shared batch": lambda seed: loader_run(
                batched_loader(dataset, args.batch_size, seed, samples, normalise=False, pool=0),
                warmup,
                NormalisedBatches,
            ),
            "1 worker, FaceBatches uint8, pooled (training)": lambda seed: loader_run(
                batched_loader(dataset, args.batch_size, seed, samples, normalise=False), warmup, NormalisedBatches
            ),
        }
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
        stages: dict[str, list[float]] = {}
        for round_index in tqdm(range(args.rounds), desc="rounds", unit="round"):
            for name, run in paths.items():
                runs[name].append(run(round_index))
            for name, micros in stage_times(dataset, args.batch_size).items():
                stages.setdefault(name, []).append(micros)
    ceiling = runs["raw cv2.imdecode, 1 thread (ceiling)"]
    print(
        f"\n{args.images} faces 112x112 JPEG q95 ({kib:.1f} KiB each), batch {args.batch_size}, shuffled, "
        f"median (min-max) of {args.rounds} interleaved rounds"
    )
    header = (
        f"{'path':<48} | {'img / wall s':>18} | {'of ceiling':>10} | {'img / worker CPU s':>18} | "
        f"{'of ceiling':>10} | {'main CPU us/img':>15}"
    )
    print(header)
    print("-" * len(header))
    for name, results in runs.items():
        wall, cpu, main_us = ([r[key] for r in results] for key in ("wall", "cpu", "main us"))
        wall_ratio = statistics.median(r["wall"] / c["wall"] for r, c in zip(results, ceiling, strict=False))
        cpu_ratio = statistics.median(r["cpu"] / c["cpu"] for r, c in zip(results, ceiling, strict=False))
        print(
            f"{name:<48} | {spread(wall):>18} | {wall_ratio:>9.0%} | {spread(cpu):>18} | {cpu_ratio:>9.0%} | "
            f"{statistics.median(main_us):>15.0f}"
        )
    print("\nwhere one face's time goes, in-process, 1 thread (CPU us per face, median (min-max)):")
    for name, values in stages.items():
        print(f"  {name:<52} {spread(values, 1):>22}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
