"""Native RecordIO: framing, round trips, byte equality with real mxnet files, headers, bad input."""

from __future__ import annotations

import json
import os
import pickle
import random
import struct

import numpy as np
import pytest

from recipes.arcface_torch.datasets.recordio import (
    MAGIC_BYTES,
    IndexedRecordReader,
    IndexedRecordWriter,
    RecordIOError,
    encode_record,
    pack_record,
    unpack_record,
)
from tests.support import FIXTURES

FIXTURE = FIXTURES / "mxnet"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


def _write(tmp_path, records):
    with IndexedRecordWriter(tmp_path / "d.idx", tmp_path / "d.rec") as writer:
        for key, payload in records:
            writer.write(key, payload)
    return tmp_path / "d.idx", tmp_path / "d.rec"


# ---------------------------------------------------------------- framing by hand


def test_whole_record_layout_by_hand():
    data = encode_record(b"abcde")
    assert data == MAGIC_BYTES + struct.pack("<I", 5) + b"abcde" + b"\0\0\0"
    assert encode_record(b"") == MAGIC_BYTES + b"\0\0\0\0"


def test_aligned_magic_splits_record_unaligned_does_not():
    payload = b"abcd" + MAGIC_BYTES + b"xyz"
    expected = (
        MAGIC_BYTES
        + struct.pack("<I", (1 << 29) | 4)
        + b"abcd"
        + MAGIC_BYTES
        + struct.pack("<I", (3 << 29) | 3)
        + b"xyz\0"
    )
    assert encode_record(payload) == expected
    unaligned = b"ab" + MAGIC_BYTES + b"cd"
    assert encode_record(unaligned) == MAGIC_BYTES + struct.pack("<I", 8) + unaligned


def test_consecutive_magic_words_give_empty_middle_chunk():
    data = encode_record(MAGIC_BYTES + MAGIC_BYTES)
    words = struct.unpack("<6I", data)
    assert [w >> 29 for w in words[1::2]] == [1, 2, 3]
    assert [w & ((1 << 29) - 1) for w in words[1::2]] == [0, 0, 0]


# ---------------------------------------------------------------- round trips


def _random_payloads(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    payloads = [b"", MAGIC_BYTES, MAGIC_BYTES * 3, b"x" + MAGIC_BYTES, b"abc" + MAGIC_BYTES + b"d"]
    for _ in range(60):
        data = bytearray(rng.randbytes(rng.randrange(0, 300)))
        for _ in range(rng.randrange(0, 4)):
            if len(data) >= 4:
                at = rng.randrange(0, len(data) - 3)
                if rng.random() < 0.5:
                    at -= at % 4  # aligned
                data[at : at + 4] = MAGIC_BYTES
        payloads.append(bytes(data))
    return payloads


def test_round_trip_random_payloads(tmp_path):
    payloads = _random_payloads(0)
    assert any(p.find(MAGIC_BYTES) % 4 == 0 and p for p in payloads)  # the split path is exercised
    keys = random.Random(1).sample(range(10_000), len(payloads))
    idx, rec = _write(tmp_path, list(zip(keys, payloads, strict=False)))
    with IndexedRecordReader(idx, rec) as reader:
        assert list(reader.keys) == keys
        for key, payload in reversed(list(zip(keys, payloads, strict=False))):
            assert reader.read(key) == payload
        assert [p for _, p in reader.scan()] == payloads
        assert 10_001 not in reader
        with pytest.raises(KeyError, match="key 10001 is not in"):
            reader.read(10_001)


def test_empty_file_pair(tmp_path):
    idx, rec = _write(tmp_path, [])
    assert rec.read_bytes() == b"" and idx.read_bytes() == b""
    with IndexedRecordReader(idx, rec) as reader:
        assert len(reader) == 0 and list(reader.scan()) == [] and 0 not in reader


def test_writer_rejects_duplicate_and_non_integer_keys(tmp_path):
    with pytest.raises(RecordIOError, match="key 3 was already written"):
        _write(tmp_path, [(3, b"a"), (3, b"b")])
    with pytest.raises(TypeError, match="must be an integer"):
        _write(tmp_path, [("a", b"a")])


def test_writer_error_leaves_old_files_untouched(tmp_path):
    idx, rec = _write(tmp_path, [(0, b"old")])
    before = rec.read_bytes(), idx.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with IndexedRecordWriter(idx, rec) as writer:
            writer.write(0, b"new")
            raise RuntimeError("boom")
    assert (rec.read_bytes(), idx.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.idx", "d.rec"]


def test_reader_reopens_per_process_and_pickles(tmp_path):
    idx, rec = _write(tmp_path, [(0, b"zero"), (1, b"one")])
    reader = IndexedRecordReader(idx, rec)
    assert reader.read(1) == b"one"
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._fd is None and clone.read(0) == b"zero"
    reader._pid = -1  # as a forked child sees it: a descriptor from another process is never used
    parent_fd = reader._fd
    assert reader.read(0) == b"zero" and reader._fd != parent_fd
    os.close(parent_fd)
    reader.close()
    clone.close()


# ---------------------------------------------------------------- real mxnet fixture


def test_mxnet_fixture_read_identically():
    with IndexedRecordReader(FIXTURE / "train.idx", FIXTURE / "train.rec") as reader:
        assert [int(k) for k in reader.keys] == [r["key"] for r in EXPECTED["records"]]
        for record in EXPECTED["records"]:
            assert reader.offset_of(record["key"]) == record["offset"]
            assert reader.read(record["key"]) == bytes.fromhex(record["payload_hex"]), record["description"]


def test_our_writer_bytes_equal_mxnet(tmp_path):
    idx, rec = _write(tmp_path, [(r["key"], bytes.fromhex(r["payload_hex"])) for r in EXPECTED["records"]])
    assert rec.read_bytes() == (FIXTURE / "train.rec").read_bytes()
    assert idx.read_bytes() == (FIXTURE / "train.idx").read_bytes()


def test_mxnet_headers_unpack_and_repack_identically():
    checked = 0
    for record in EXPECTED["records"]:
        if "header" not in record:
            continue
        payload = bytes.fromhex(record["payload_hex"])
        header, body = unpack_record(payload)
        want = record["header"]
        assert (header.flag, header.id, header.id2) == (want["flag"], want["id"], want["id2"])
        assert len(body) == record["body_len"]
        if want["flag"] > 0:
            np.testing.assert_array_equal(header.label, np.asarray(want["label"], np.float32))
        else:
            assert header.label == want["label"]
        assert pack_record(want["label"], body, want["id"], want["id2"]) == payload
        checked += 1
    assert checked == 6


# ---------------------------------------------------------------- image header


def test_pack_unpack_flag_zero():
    payload = pack_record(7.0, b"JPEG", id=12, id2=3)
    assert payload[:24] == struct.pack("<IfQQ", 0, 7.0, 12, 3)
    header, body = unpack_record(payload)
    assert (header.flag, header.label, header.id, header.id2, body) == (0, 7.0, 12, 3, b"JPEG")


def test_pack_unpack_flag_positive():
    payload = pack_record([5.0, 9.0, 0.25], b"PNG", id=4)
    assert payload[:24] == struct.pack("<IfQQ", 3, 0.0, 4, 0)
    assert payload[24:36] == struct.pack("<3f", 5.0, 9.0, 0.25)
    header, body = unpack_record(payload)
    assert header.flag == 3 and body == b"PNG"
    np.testing.assert_array_equal(header.label, [5.0, 9.0, 0.25])


def test_unpack_errors():
    with pytest.raises(RecordIOError, match="key 9 holds 10 bytes, fewer than the 24-byte image header"):
        unpack_record(b"0123456789", where="key 9")
    with pytest.raises(RecordIOError, match="flag 5 .* only 4 bytes after the header"):
        unpack_record(struct.pack("<IfQQ", 5, 0.0, 0, 0) + b"abcd")


# ---------------------------------------------------------------- bad files


def test_wrong_magic_names_file_and_offset(tmp_path):
    idx, rec = _write(tmp_path, [(0, b"first"), (1, b"second")])
    data = bytearray(rec.read_bytes())
    data[16:20] = b"JUNK"
    rec.write_bytes(bytes(data))
    with IndexedRecordReader(idx, rec) as reader:
        assert reader.read(0) == b"first"
        with pytest.raises(RecordIOError, match=r"d\.rec: no RecordIO magic word at byte offset 16"):
            reader.read(1)


def test_truncated_record(tmp_path):
    idx, rec = _write(tmp_path, [(0, b"x" * 40)])
    rec.write_bytes(rec.read_bytes()[:30])
    with IndexedRecordReader(idx, rec) as reader:
        with pytest.raises(RecordIOError, match="truncated record at byte offset 8: .* file ends at byte 30"):
            reader.read(0)


def test_idx_offset_beyond_file(tmp_path):
    idx, rec = _write(tmp_path, [(0, b"a"), (1, b"b")])
    idx.write_text("0\t0\n1\t4096\n")
    with pytest.raises(RecordIOError, match=r"d\.idx: record 2 \(key 1\) has offset 4096, beyond the end of"):
        IndexedRecordReader(idx, rec)


def test_idx_pointing_into_a_split_record(tmp_path):
    idx, rec = _write(tmp_path, [(0, b"abcd" + MAGIC_BYTES + b"efgh")])
    idx.write_text("0\t12\n")
    with IndexedRecordReader(idx, rec) as reader:
        with pytest.raises(RecordIOError, match="byte offset 12 has continuation flag 3"):
            reader.read(0)


def test_malformed_idx_line_and_duplicates(tmp_path):
    idx, rec = _write(tmp_path, [(0, b"a"), (1, b"b")])
    idx.write_text("0\t0\nbad line here\n")
    with pytest.raises(RecordIOError, match="line 2 is 'bad line here'"):
        IndexedRecordReader(idx, rec)
    idx.write_text("0 0\n")
    with pytest.raises(RecordIOError, match="line 1 is '0 0', expected 'key<TAB>offset'"):
        IndexedRecordReader(idx, rec)
    idx.write_text("0\t0\n0\t12\n")
    with pytest.raises(RecordIOError, match="key 0 appears more than once"):
        IndexedRecordReader(idx, rec)


def test_missing_files(tmp_path):
    idx, rec = _write(tmp_path, [(0, b"a")])
    with pytest.raises(FileNotFoundError, match=r"record file .*nope\.rec not found"):
        IndexedRecordReader(idx, tmp_path / "nope.rec")
    with pytest.raises(FileNotFoundError, match=r"index file .*nope\.idx not found"):
        IndexedRecordReader(tmp_path / "nope.idx", rec)


def test_record_too_large_is_refused():
    class Huge(bytes):
        def __len__(self):
            return 1 << 29

    with pytest.raises(RecordIOError, match="below 2\\^29 bytes"):
        encode_record(Huge(b""))
