"""MS1MV3, IResNet-100, ArcFace + UNPG."""
from easydict import EasyDict as edict

config = edict()
config.network = "r100"
config.embedding_size = 512
config.margin_list = (1.0, 0.5, 0.0)
config.loss = "unpg"
config.sample_rate = 1.0
config.fp16 = True
config.optimizer = "sgd"
config.lr = 0.1
config.momentum = 0.9
config.weight_decay = 5e-4
config.batch_size = 128
config.num_epoch = 20
config.warmup_epoch = 0
config.rec = "/train_tmp/ms1m-retinaface-t1"
config.num_classes = 93431
config.num_image = 5179510
config.val_targets = ["lfw", "cfp_fp", "agedb_30"]
config.num_workers = 4
config.verbose = 2000
config.frequent = 10
