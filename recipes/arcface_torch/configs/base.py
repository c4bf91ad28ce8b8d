"""Defaults for every config; a config file overrides keys of this one and may add none.

Key names, meanings and defaults follow upstream arcface_torch. Keys added by this recipe: `loss`, `plugins`
(and one section per registered loss, e.g. `unpg`, with its plugin's defaults), `scale`, `dropout`, `clip_grad_norm`,
`max_steps`, `synthetic`, `nan_policy`, `lr_power`, `margin_gradient`, `amp_dtype`, `dist_timeout`, `head_chunk`,
`head_chunk_budget` (the chunked head; 0, upstream's whole-matrix head, by default), `checkpoint_every`,
`keep_checkpoints` (`resume` also takes "auto"), and the fine-tuning keys `init_backbone`, `init_head`,
`backbone_lr_scale`, `freeze_backbone_epochs`, `bn_mode` (defaults: upstream's behaviour, a run from random weights).
DALI input (`dali`, `dali_aug`) works as upstream's when NVIDIA DALI is installed (datasets/dali_batches.py; without
it, a warning and the PyTorch DataLoader). Upstream's Weights & Biases keys are accepted so upstream config files load
unchanged; asking for W&B warns and training logs to
TensorBoard.
"""

from easydict import EasyDict as edict

config = edict()

# model
config.network = "r50"  # r18 | r34 | r50 | r100 | r200 | mbf
config.embedding_size = 512
config.dropout = 0.0
config.fp16 = False  # backbone under autocast (half precision) + GradScaler; the head stays fp32
config.amp_dtype = "auto"  # half type when fp16: "auto" (float16 on CUDA, bfloat16 on CPU) | "float16" | "bfloat16"

# head: margin_list = (m1, m2, m3): psi(cos) = cos(m1*theta + m2) - m3; ArcFace (1.0, 0.5, 0.0), CosFace (1.0, 0.0, 0.4)
config.margin_list = (1.0, 0.5, 0.0)
config.scale = 64.0  # s
config.sample_rate = 1.0  # partial FC: fraction of class centres sampled per step (0: the batch's positives only)
config.interclass_filtering_threshold = 0.0  # > 0: non-target cosines above it are set to 0 (upstream's option)
config.margin_gradient = "straight_through"  # target-logit gradient: "straight_through" (upstream) | "exact"
config.head_chunk = (
    0  # 0: the whole (B, C_local) logit matrix (upstream's head) | N > 0: classes in chunks of N | "auto"
)
config.head_chunk_budget = 4.0  # GiB per rank the chunked head may keep its exps in; chunks beyond are recomputed
config.loss = "margin_softmax"  # a registered loss or a list composed in order, e.g. ["magface", "unpg"]
config.plugins = ["plugins.unpg", "plugins.magface", "plugins.npcface", "plugins.uss", "plugins.ri"]
# modules whose register(registry) adds losses; each loss's options
# (config.<loss name>, e.g. config.unpg.wisk) default to its plugin's values

# optimisation
config.optimizer = "sgd"  # sgd | adamw
config.lr = 0.1
config.momentum = 0.9
config.weight_decay = 5e-4
config.batch_size = 128  # per rank
config.gradient_acc = 1
config.clip_grad_norm = 5.0  # 0 disables clipping
config.num_epoch = 20
config.warmup_epoch = 0  # linear warmup epochs (<= 0: none)
config.lr_power = 1.0  # polynomial decay power after warmup (upstream: 1.0, linear)
config.max_steps = 0  # >0: stop after this many global steps (batches, as upstream counts them)

# fine-tuning (docs/finetune.md); the defaults are upstream's: random weights, one LR, BatchNorm in train mode
config.init_backbone = ""  # backbone weights to start from: a model.pt, a checkpoint or a run folder ("": none)
config.init_head = "random"  # class centres: "random" (upstream's normal(0, 0.01)) | "imprint" (mean embeddings)
config.backbone_lr_scale = 1.0  # the backbone's LR is lr * backbone_lr_scale; the head's is lr
config.freeze_backbone_epochs = 0  # the first N epochs train only the head (no backbone update, no weight decay)
config.bn_mode = "train"  # "train" (upstream) | "frozen": BatchNorm statistics and affine parameters as loaded

# data
config.rec = "synthetic"  # "synthetic" | RecordIO folder (train.rec/.idx/property) | image folder
config.num_classes = 0  # 0: read from the dataset; with rec = "synthetic": the number of identities
config.num_image = 0  # 0: read from the dataset; else sets the LR schedule's length, as upstream
config.num_workers = 2
config.seed = 2048
config.val_targets = []  # names of .bin files beside the .rec (a missing one is skipped), or "synthetic"
config.synthetic = edict()
config.synthetic.num_identities = 1000
config.synthetic.images_per_identity = 20
config.synthetic.val_identities = 200
config.synthetic.val_pairs = 1000
config.synthetic.label_noise = 0.0  # fraction of training samples given a wrong label
config.synthetic.seed = 0
config.synthetic.preset = "classic"  # "classic" | "hard": head turns, face masks/sunglasses, harsh side light
config.synthetic.max_yaw = 40.0  # "hard" only: largest head turn in degrees (pitch up to half of it)
config.synthetic.identity_offset = 0  # class k renders identity offset + k: another offset, other people

# logging, evaluation, checkpoints
config.output = None  # None or "": work_dirs/<config name>
config.verbose = 2000  # verification every `verbose` steps (and at the end)
config.frequent = 10  # progress line every `frequent` steps
config.resume = False  # True: continue the run in config.output; "auto": continue it if it has a checkpoint, else start
config.save_all_states = False  # per-rank checkpoints (optimizer, scheduler, scaler, RNG) for resume
config.checkpoint_every = 0  # >0: also save a checkpoint set every this many global steps (0: epoch ends only)
config.keep_checkpoints = 1  # checkpoint sets kept; an older one goes once a newer one is complete on every rank
config.nan_policy = "stop"  # "stop": a non-finite loss stops training, keeping the last good checkpoint
config.dist_timeout = 300  # seconds a collective may wait for another rank before the job stops

# upstream's DALI input: used when NVIDIA DALI is installed and rec is a RecordIO folder, else a warning
config.dali = False
config.dali_aug = False
# upstream's Weights & Biases keys: accepted so upstream configs load; True gets a warning (TensorBoard is used)
config.using_wandb = False
config.wandb_key = "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
config.wandb_entity = "entity"
config.wandb_project = "project"
config.wandb_log_all = True
config.wandb_resume = False
config.suffix_run_name = None
config.save_artifacts = False
