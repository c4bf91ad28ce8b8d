"""Glint360K, IResNet-100, CosFace (upstream arcface_torch's glint360k_r100 settings)."""

from easydict import EasyDict as edict

config = edict()
config.loss = "margin_softmax"
config.network = "r100"
config.margin_list = (1.0, 0.0, 0.4)
config.fp16 = True
config.weight_decay = 1e-4
config.rec = "/train_tmp/glint360k"
config.num_classes = 360232
config.num_image = 17091657
config.val_targets = ["lfw", "cfp_fp", "agedb_30"]
config.num_workers = 4
