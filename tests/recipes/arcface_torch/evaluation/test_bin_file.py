""".bin verification files: round trip, Python 2 pickles, refusals that name the problem."""

import os
import pickle

import numpy as np
import pytest

from recipes.arcface_torch.evaluation.bin_file import encode_image, load_bin, save_bin

# ----------------------------------------------------------------------------- .bin files


def encoded_faces(count, seed=0, size=112):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)
    return images, [encode_image(image, ".png") for image in images]


def test_save_bin_load_bin_round_trip(tmp_path):
    images, encoded = encoded_faces(4)
    path = save_bin(tmp_path / "toy.bin", encoded, [True, False])
    vset = load_bin(path)
    assert vset.name == "toy"
    np.testing.assert_array_equal(vset.images, images)  # PNG is lossless; RGB order kept
    np.testing.assert_array_equal(vset.issame, [True, False])
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_load_bin_resizes_and_reads_python2_style_strings(tmp_path):
    images, encoded = encoded_faces(2, size=56)
    # A Python 2 pickle stores image bytes as `str`; protocol 2 SHORT_BINSTRING is how py2 wrote them.
    body = b"\x80\x02(]q\x00("
    for data in encoded:
        body += b"T" + len(data).to_bytes(4, "little") + data
    body += b"e]q\x01\x88at."  # (list of str, [True]) as a tuple built with MARK ... TUPLE
    path = tmp_path / "py2.bin"
    path.write_bytes(body)
    vset = load_bin(path, image_size=(112, 112))
    assert vset.images.shape == (2, 112, 112, 3) and vset.issame.tolist() == [True]


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([_Exploit(marker)], [True])))
    with pytest.raises(ValueError, match="evil.bin.*refusing to load global"):
        load_bin(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"images": []}, "top-level object is dict"),
        ((["not bytes", b"x"],), "top-level object is tuple"),
        (([b"a", b"b"], [2]), "issame entry 0 is 2"),
        (([b"a", 3], [True]), "image 1 is int"),
        (([b"a", b"b", b"c"], [True]), "3 images for 1 pairs"),
        (([], []), "issame list is empty"),
    ],
)
def test_load_bin_refuses_wrong_structures(tmp_path, payload, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ValueError, match=message):
        load_bin(path)


def test_load_bin_names_undecodable_image(tmp_path):
    _, encoded = encoded_faces(1)
    path = save_bin(tmp_path / "broken.bin", [encoded[0], b"not an image"], [False])
    with pytest.raises(ValueError, match=r"broken.bin image 1: could not decode"):
        load_bin(path)
