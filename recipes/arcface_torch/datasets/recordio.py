"""MXNet indexed RecordIO (.rec + .idx), read and written natively, byte for byte as dmlc-core / mxnet do.

On-disk layout of one record (all words little-endian uint32):

    magic 0xCED7230A | lrec = (cflag << 29) | length | payload | zero padding to a multiple of 4

cflag 0 is a whole record. A payload that holds the magic word at a 4-byte-aligned offset is split
there (the magic word itself is dropped): cflag 1 starts the record, 2 continues it, 3 ends it; the
reader re-inserts the magic word between the chunks. Only the last chunk is padded (the others have
lengths that are multiples of 4 by construction). The `.idx` file is text, one `key<TAB>offset` line
per record, offset = byte position of the record's first magic word.

Image records carry a 24-byte header in front of the encoded image, as `mxnet.recordio.pack` writes
it: struct '<IfQQ' = (flag uint32, label float32, id uint64, id2 uint64). When flag > 0 the scalar
label field is 0 and `flag` float32 labels follow the header; the label is then that array.

    with IndexedRecordWriter("train.idx", "train.rec") as w:
        w.write(0, pack_record(3.0, jpeg_bytes, id=0))
    with IndexedRecordReader("train.idx", "train.rec") as r:
        header, jpeg = unpack_record(r.read(0))
"""

from __future__ import annotations

import numbers
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_BITS = 29
LENGTH_MASK = (1 << LENGTH_BITS) - 1
MAX_PAYLOAD = 1 << LENGTH_BITS
HEADER_FORMAT = "<IfQQ"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)  # 24

CFLAG_WHOLE, CFLAG_START, CFLAG_MIDDLE, CFLAG_END = 0, 1, 2, 3

PathLike = str | os.PathLike


class RecordIOError(ValueError):
    """A .rec/.idx file or an image record is malformed or does not match its index."""


# ---------------------------------------------------------------- image record header


@dataclass(frozen=True)
class RecordHeader:
    """The 24-byte image-record header; `label` is a float, or a float32 array when flag > 0."""

    flag: int
    label: float | np.ndarray
    id: int
    id2: int


def pack_record(label: float | Sequence[float] | np.ndarray, body: bytes = b"", id: int = 0, id2: int = 0) -> bytes:
    """Header + body as `mxnet.recordio.pack(IRHeader(0, label, id, id2), body)` builds it.

    A number gives flag 0 and the label in the header; a sequence gives flag = len(label), label field 0,
    and the labels as float32 right after the 24 header bytes.
    """
    if isinstance(label, numbers.Number):
        return struct.pack(HEADER_FORMAT, 0, float(label), id, id2) + bytes(body)
    labels = np.asarray(label, dtype="<f4").reshape(-1)
    return struct.pack(HEADER_FORMAT, labels.size, 0.0, id, id2) + labels.tobytes() + bytes(body)


def unpack_record(payload: bytes, where: str = "record") -> tuple[RecordHeader, bytes]:
    """Split a payload into (RecordHeader, body) as `mxnet.recordio.unpack` does; `where` names it in errors."""
    if len(payload) < HEADER_SIZE:
        raise RecordIOError(
            f"{where} holds {len(payload)} bytes, fewer than the {HEADER_SIZE}-byte image header; "
            f"it was not written with mxnet.recordio.pack or tools/pack_rec.py"
        )
    flag, label, rec_id, rec_id2 = struct.unpack_from(HEADER_FORMAT, payload)
    body_start = HEADER_SIZE
    if flag > 0:
        body_start = HEADER_SIZE + 4 * flag
        if len(payload) < body_start:
            raise RecordIOError(
                f"{where} has header flag {flag} (that many float32 labels) but only "
                f"{len(payload) - HEADER_SIZE} bytes after the header; the record is truncated or its header is wrong"
            )
        label = np.frombuffer(payload, dtype="<f4", count=flag, offset=HEADER_SIZE).astype(np.float32)
    return RecordHeader(flag, label, rec_id, rec_id2), bytes(payload[body_start:])


# ---------------------------------------------------------------- record framing


def encode_record(payload: bytes) -> bytes:
    """The exact bytes dmlc-core's RecordIOWriter::WriteRecord emits for one payload."""
    size = len(payload)
    if size >= MAX_PAYLOAD:
        raise RecordIOError(f"a record of {size} bytes is too large: RecordIO records must stay below 2^29 bytes")
    payload = bytes(payload)
    view = memoryview(payload)
    parts = []
    start = 0
    position = payload.find(MAGIC_BYTES)
    while position != -1:
        if position % 4 == 0:
            cflag = CFLAG_START if start == 0 else CFLAG_MIDDLE
            parts.append(MAGIC_BYTES + struct.pack("<I", (cflag << LENGTH_BITS) | (position - start)))
            parts.append(view[start:position])
            start = position + 4
            position = payload.find(MAGIC_BYTES, start)
        else:
            position = payload.find(MAGIC_BYTES, position + 1)
    cflag = CFLAG_WHOLE if start == 0 else CFLAG_END
    parts.append(MAGIC_BYTES + struct.pack("<I", (cflag << LENGTH_BITS) | (size - start)))
    parts.append(view[start:])
    parts.append(b"\0" * (-size % 4))
    return b"".join(parts)


def _read_exact(fd: int, size: int, offset: int, path: Path, what: str, file_size: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise RecordIOError(
            f"{path}: truncated record at byte offset {offset}: {what} needs {size} bytes but the file ends at "
            f"byte {file_size}; the file was cut short, re-copy or re-pack it"
        )
    return data


def read_record_at(fd: int, offset: int, path: Path, file_size: int) -> tuple[bytes, int]:
    """Read the record starting at `offset` from an open descriptor; return (payload, offset after it)."""
    pieces = []
    position = offset
    first = True
    while True:
        head = _read_exact(fd, 8, position, path, "the 8-byte record head", file_size)
        magic, lrec = struct.unpack("<II", head)
        if magic != MAGIC:
            raise RecordIOError(
                f"{path}: no RecordIO magic word at byte offset {position} (found 0x{magic:08X}, expected "
                f"0x{MAGIC:08X}); the .idx does not belong to this .rec or the file is corrupt, rebuild it with tools/pack_rec.py"
            )
        cflag, length = lrec >> LENGTH_BITS, lrec & LENGTH_MASK
        expected = (CFLAG_WHOLE, CFLAG_START) if first else (CFLAG_MIDDLE, CFLAG_END)
        if cflag not in expected:
            raise RecordIOError(
                f"{path}: record chunk at byte offset {position} has continuation flag {cflag}, expected one of "
                f"{expected}; the offset points into the middle of a record or the file is corrupt"
            )
        padded = (length + 3) & ~3
        chunk = (
            _read_exact(fd, padded, position + 8, path, f"a {length}-byte payload chunk", file_size) if length else b""
        )
        pieces.append(chunk[:length])
        position += 8 + padded
        if cflag in (CFLAG_WHOLE, CFLAG_END):
            return (pieces[0] if len(pieces) == 1 else MAGIC_BYTES.join(pieces)), position
        first = False


# ---------------------------------------------------------------- .idx parsing


def _parse_index(idx_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (keys, offsets) as int64 arrays in file order; a bad line raises naming the line."""
    if not idx_path.read_bytes().strip():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    try:
        table = np.loadtxt(idx_path, dtype=np.int64, delimiter="\t", ndmin=2, encoding="ascii")
    except (ValueError, UnicodeDecodeError):
        table = None
    if table is not None and table.shape[1] == 2:
        return np.ascontiguousarray(table[:, 0]), np.ascontiguousarray(table[:, 1])
    with open(idx_path, encoding="ascii", errors="replace") as handle:  # slow path, only to name the line
        for number, line in enumerate(handle, start=1):
            fields = line.strip().split("\t")
            if line.strip() and (len(fields) != 2 or not all(f.strip().lstrip("-").isdigit() for f in fields)):
                raise RecordIOError(
                    f"{idx_path}: line {number} is {line.strip()!r}, expected 'key<TAB>offset' with two integers; "
                    f"rebuild the index with tools/pack_rec.py"
                )
    raise RecordIOError(f"{idx_path}: not a 'key<TAB>offset' index; rebuild it with tools/pack_rec.py")


# ---------------------------------------------------------------- reader


class IndexedRecordReader:
    """Random access to the records of a .rec file by the integer keys of its .idx file.

    Safe in DataLoader workers: the file is opened lazily and reopened in each new process, so no
    descriptor is shared across fork (reads use pread, never a shared file position); pickling drops
    the descriptor.
    """

    def __init__(self, idx_path: PathLike, rec_path: PathLike):
        self._fd = self._pid = None
        self.idx_path, self.rec_path = Path(idx_path), Path(rec_path)
        for path, kind in ((self.rec_path, "record file"), (self.idx_path, "index file")):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{kind} {path} not found; pass the .rec/.idx pair of an insightface dataset "
                    f"or build one with tools/pack_rec.py"
                )
        self.file_size = self.rec_path.stat().st_size
        self._keys, self._offsets = _parse_index(self.idx_path)
        bad = np.nonzero((self._offsets < 0) | (self._offsets + 8 > self.file_size))[0]
        if bad.size:
            i = int(bad[0])
            raise RecordIOError(
                f"{self.idx_path}: record {i + 1} (key {int(self._keys[i])}) has offset {int(self._offsets[i])}, "
                f"beyond the end of {self.rec_path} ({self.file_size} bytes); the .rec is truncated or the .idx "
                f"belongs to another .rec, re-copy or rebuild them"
            )
        self._order = np.argsort(self._keys, kind="stable")
        self._sorted_keys = self._keys[self._order]
        dup = np.nonzero(np.diff(self._sorted_keys) == 0)[0]
        if dup.size:
            raise RecordIOError(
                f"{self.idx_path}: key {int(self._sorted_keys[dup[0]])} appears more than once; rebuild the index"
            )

    # -- file handle, one per process
    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.rec_path, os.O_RDONLY)  # a parent's descriptor is left to the parent
            self._pid = os.getpid()
        return self._fd

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = self._pid = None

    def __enter__(self) -> IndexedRecordReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fd"] = state["_pid"] = None
        return state

    # -- index
    @property
    def keys(self) -> np.ndarray:
        """Keys in .idx order (int64)."""
        return self._keys

    @property
    def offsets(self) -> np.ndarray:
        """Byte offsets in .idx order (int64)."""
        return self._offsets

    def __len__(self) -> int:
        return int(self._keys.size)

    def __contains__(self, key: int) -> bool:
        return self._find(key) is not None

    def missing_keys(self, keys: np.ndarray) -> np.ndarray:
        """Those of `keys` that the .idx does not list (vectorised)."""
        keys = np.asarray(keys, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._sorted_keys, keys), max(self._sorted_keys.size - 1, 0))
        found = self._sorted_keys[pos] == keys if self._sorted_keys.size else np.zeros(keys.shape, bool)
        return keys[~found]

    def _find(self, key: int):
        pos = int(np.searchsorted(self._sorted_keys, key))
        if pos < self._sorted_keys.size and self._sorted_keys[pos] == key:
            return int(self._offsets[self._order[pos]])
        return None

    def offset_of(self, key: int) -> int:
        offset = self._find(key)
        if offset is None:
            raise KeyError(f"key {key} is not in {self.idx_path} ({len(self)} records); use a key listed in the .idx")
        return offset

    # -- records
    def read(self, key: int) -> bytes:
        """The payload stored under `key`."""
        return self.read_at(self.offset_of(key))

    def read_at(self, offset: int) -> bytes:
        """The payload of the record whose first magic word is at byte `offset`."""
        return read_record_at(self._descriptor(), offset, self.rec_path, self.file_size)[0]

    def scan(self) -> Iterator[tuple[int, bytes]]:
        """Every record of the .rec in file order, as (offset, payload), ignoring the .idx."""
        offset = 0
        while offset < self.file_size:
            payload, following = read_record_at(self._descriptor(), offset, self.rec_path, self.file_size)
            yield offset, payload
            offset = following


# ---------------------------------------------------------------- writer


class IndexedRecordWriter:
    """Write a .rec/.idx pair atomically: both go to temp files in the target folder and replace the
    targets only when the `with` block ends without error (an error leaves any old pair untouched).

    The bytes equal those of `mxnet.recordio.MXIndexedRecordIO(idx, rec, "w")` with the same writes.
    """

    def __init__(self, idx_path: PathLike, rec_path: PathLike):
        self.idx_path, self.rec_path = Path(idx_path), Path(rec_path)
        for path in (self.idx_path, self.rec_path):
            if not path.parent.is_dir():
                raise FileNotFoundError(f"folder {path.parent} for {path.name} does not exist; create it first")
        suffix = f".tmp-{os.getpid()}"
        self._tmp_rec = self.rec_path.with_name(self.rec_path.name + suffix)
        self._tmp_idx = self.idx_path.with_name(self.idx_path.name + suffix)
        self._rec = open(self._tmp_rec, "wb")
        self._idx = open(self._tmp_idx, "w", encoding="ascii", newline="\n")
        self._keys: set[int] = set()
        self._position = 0
        self._open = True

    def write(self, key: int, payload: bytes) -> None:
        """Append one record under integer `key`."""
        if not self._open:
            raise RecordIOError(f"writer for {self.rec_path} is closed; open a new IndexedRecordWriter")
        if isinstance(key, bool) or not isinstance(key, numbers.Integral):
            raise TypeError(
                f"record key {key!r} for {self.rec_path} must be an integer, like the keys of insightface .idx files"
            )
        key = int(key)
        if key in self._keys:
            raise RecordIOError(f"key {key} was already written to {self.rec_path}; every key must be unique")
        data = encode_record(payload)
        self._rec.write(data)
        self._idx.write(f"{key}\t{self._position}\n")
        self._keys.add(key)
        self._position += len(data)

    def close(self) -> None:
        """Flush and move the finished pair into place."""
        if not self._open:
            return
        self._open = False
        for handle in (self._rec, self._idx):
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        # drop the old index first: a crash between the two renames leaves a missing .idx (a clear
        # error), never an old .idx pointing into a new .rec
        if self.idx_path.exists():
            os.remove(self.idx_path)
        os.replace(self._tmp_rec, self.rec_path)
        os.replace(self._tmp_idx, self.idx_path)

    def abort(self) -> None:
        """Discard everything written; existing target files are left as they were."""
        if not self._open:
            return
        self._open = False
        for handle, path in ((self._rec, self._tmp_rec), (self._idx, self._tmp_idx)):
            handle.close()
            if path.exists():
                os.remove(path)

    def __enter__(self) -> IndexedRecordWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
