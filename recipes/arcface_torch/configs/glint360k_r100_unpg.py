"""Glint360K, IResNet-100, CosFace + UNPG."""

from easydict import EasyDict as edict

config = edict()
config.network = "r100"
config.margin_list = (1.0, 0.0, 0.4)
config.loss = "unpg"
config.fp16 = True
config.weight_decay = 1e-4
config.rec = "/train_tmp/glint360k"
config.num_classes = 360232
config.num_image = 17091657
config.val_targets = ["lfw", "cfp_fp", "agedb_30"]
config.num_workers = 4
