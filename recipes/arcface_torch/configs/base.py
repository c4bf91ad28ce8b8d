"""Defaults for every config; a config file overrides keys of this one and may add none.

Key names and meanings follow upstream arcface_torch. Keys added by this recipe: `loss`, `plugins`
(and one section per registered loss), `optimizer` choices, `clip_grad_norm`, `max_steps`, `synthetic`, `nan_policy`.
"""
from easydict import EasyDict as edict

config = edict()

# model
config.network = "r50"               # r18 | r34 | r50 | r100 | r200 | mbf
config.embedding_size = 512
config.dropout = 0.0
config.fp16 = False                  # autocast fp16 + GradScaler (CUDA only; ignored with a warning on CPU)

# head: margin_list = (m1, m2, m3): psi(cos) = cos(m1*theta + m2) - m3; ArcFace (1.0, 0.5, 0.0), CosFace (1.0, 0.0, 0.4)
config.margin_list = (1.0, 0.5, 0.0)
config.scale = 64.0                  # s
config.sample_rate = 1.0             # partial FC: fraction of negative class centres sampled per step
config.interclass_filtering_threshold = 0.0
config.loss = "margin_softmax"       # a registered loss or a list composed in order, e.g. ["magface", "unpg"]
config.plugins = ["plugins.unpg", "plugins.magface", "plugins.npcface", "plugins.uss"]
                                     # modules whose register(registry) adds losses; each loss's options
                                     # (config.<loss name>, e.g. config.unpg.wisk) default to its plugin's values

# optimisation
config.optimizer = "sgd"             # sgd | adamw
config.lr = 0.1
config.momentum = 0.9
config.weight_decay = 5e-4
config.batch_size = 128              # per rank
config.gradient_acc = 1
config.clip_grad_norm = 5.0          # 0 disables clipping
config.num_epoch = 20
config.warmup_epoch = 0
config.max_steps = 0                 # >0: stop after this many optimizer steps (smoke runs, benchmarks)

# data
config.rec = "synthetic"             # "synthetic" | RecordIO folder (train.rec/.idx/property) | image folder
config.num_classes = 0               # 0: read from the dataset
config.num_image = 0                 # 0: read from the dataset
config.num_workers = 2
config.seed = 2048
config.val_targets = []              # names of .bin files beside the .rec, or "synthetic"
config.synthetic = edict()
config.synthetic.num_identities = 1000
config.synthetic.images_per_identity = 20
config.synthetic.val_identities = 200
config.synthetic.val_pairs = 1000
config.synthetic.label_noise = 0.0   # fraction of training samples given a wrong label
config.synthetic.seed = 0

# logging, evaluation, checkpoints
config.output = ""                   # "" : work_dirs/<config name>
config.verbose = 2000                # verification every `verbose` steps (and at the end)
config.frequent = 10                 # progress line every `frequent` steps
config.resume = False
config.save_all_states = True        # checkpoint optimizer, scheduler, scaler and RNG for exact resume
config.nan_policy = "stop"           # "stop": a non-finite loss stops training, keeping the last good checkpoint
