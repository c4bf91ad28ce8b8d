"""make_bin with real-world images: formats, --resize, --landmarks, each distinct image read once."""
import cv2
import numpy as np

from recipes.arcface_torch.evaluation.bin_file import load_bin
from recipes.arcface_torch.face_image import ARCFACE_DST
from tools import make_bin


def test_pgm_resize_and_landmarks_in_one_bin(tmp_path, capsys):
    rng = np.random.default_rng(1)
    cv2.imwrite(str(tmp_path / "a.pgm"), rng.integers(0, 256, (112, 112), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), rng.integers(0, 256, (130, 120, 3), dtype=np.uint8))
    photo = np.zeros((200, 200, 3), np.uint8)
    points = ARCFACE_DST * 1.2 + 15
    for x, y in np.round(points).astype(int):
        photo[y - 1:y + 2, x - 1:x + 2] = 255
    cv2.imwrite(str(tmp_path / "c.jpg"), photo)
    (tmp_path / "marks.txt").write_text("c.jpg " + " ".join(f"{v:.2f}" for v in points.ravel()) + "\n")
    (tmp_path / "pairs.txt").write_text("a.pgm b.png 0\na.pgm a.pgm 1\nc.jpg b.png 0\n")
    out = tmp_path / "val.bin"
    assert make_bin.main([str(tmp_path / "pairs.txt"), str(out), "--quiet"]) == 1
    assert "b.png: image is 120x130, expected 112x112; pass --resize 112" in capsys.readouterr().err
    assert make_bin.main([str(tmp_path / "pairs.txt"), str(out), "--quiet", "--resize", "112",
                          "--landmarks", str(tmp_path / "marks.txt")]) == 0
    vset = load_bin(out)
    assert vset.num_pairs == 3 and list(vset.issame) == [False, True, False]
    np.testing.assert_array_equal(vset.images[0], vset.images[2])  # one image, prepared once, stored twice
    x, y = np.round(ARCFACE_DST[0]).astype(int)
    assert vset.images[4][y - 1:y + 2, x - 1:x + 2].max() > 100  # aligned: the left-eye dot on the template
