"""MS1MV3, MobileFaceNet, ArcFace + UNPG."""

from easydict import EasyDict as edict

config = edict()
config.margin_list = (1.0, 0.5, 0.0)
config.network = "mbf"
config.loss = "unpg"
config.fp16 = True
config.weight_decay = 1e-4
config.num_epoch = 40
config.rec = "/train_tmp/ms1m-retinaface-t1"
config.num_classes = 93431
config.num_image = 5179510
config.val_targets = ["lfw", "cfp_fp", "agedb_30"]
config.num_workers = 4
