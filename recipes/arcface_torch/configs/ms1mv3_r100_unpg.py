"""MS1MV3, IResNet-100, ArcFace + UNPG."""

from easydict import EasyDict as edict

config = edict()
config.margin_list = (1.0, 0.5, 0.0)
config.network = "r100"
config.loss = "unpg"
config.fp16 = True
config.rec = "/train_tmp/ms1m-retinaface-t1"
config.num_classes = 93431
config.num_image = 5179510
config.val_targets = ["lfw", "cfp_fp", "agedb_30"]
config.num_workers = 4
