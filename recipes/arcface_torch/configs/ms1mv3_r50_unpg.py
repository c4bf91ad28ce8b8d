"""MS1MV3, IResNet-50, ArcFace + UNPG (wisk 1.5, as in the paper)."""

from easydict import EasyDict as edict

config = edict()
config.network = "r50"
config.margin_list = (1.0, 0.5, 0.0)
config.loss = "unpg"
config.fp16 = True
config.rec = "/train_tmp/ms1m-retinaface-t1"
config.num_classes = 93431
config.num_image = 5179510
config.val_targets = ["lfw", "cfp_fp", "agedb_30"]
config.num_workers = 4
