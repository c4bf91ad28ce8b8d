"""Fine-tune a trained backbone on your own faces (docs/finetune.md). Set the two paths, then:

    python recipes/arcface_torch/train.py recipes/arcface_torch/configs/finetune_example \
        --set init_backbone=models/ms1mv3_arcface_r50/backbone.pth --set rec=/data/my_faces

Only keys a fine-tune sets differently from a run from scratch are here; the others keep configs/base.py's
(upstream arcface_torch's) values. A resumed fine-tune (resume = True) loads its own checkpoint and nothing else.
"""

from easydict import EasyDict as edict

config = edict()

# --- where the run starts
# The backbone to start from: a plain model.pt / backbone.pth state_dict (ours, or insightface's released files),
# one of our checkpoint_step<N>_rank<r>.pt, upstream's checkpoint_gpu_<r>.pt, or a run folder. Loaded strictly on every
# rank; a file that does not fit names the network / embedding_size it holds.
config.init_backbone = "models/ms1mv3_arcface_r50/backbone.pth"
config.network = "r50"  # the architecture the file was trained with
config.embedding_size = 512  # and its embedding size
# The new class centres: "imprint" sets each to the normalised mean embedding of that person's images (one pass of
# the loaded backbone over the training set before step 0); "random" is upstream's normal(0, 0.01).
config.init_head = "imprint"  # measured: ahead of a random head on every seed (docs/finetune.md)

# --- your faces
config.rec = "/data/my_faces"  # an image folder (root/<person>/<image>, aligned 112x112 crops) or a RecordIO folder
config.num_classes = 0  # read from the folder
config.val_targets = []  # .bin files to verify on, e.g. ["/data/my_test_pairs.bin"] (tools/make_bin.py writes them)
config.sample_rate = 1.0  # a few thousand people fit in one head: no partial-FC sampling

# --- how the backbone trains
config.backbone_lr_scale = 1.0  # the backbone's LR is lr * this, the head's lr (0.1 lost 1.5-1.8 points in the study)
config.freeze_backbone_epochs = 0  # N > 0: the first N epochs train the head only (backbone untouched)
config.bn_mode = "train"  # "frozen": BatchNorm statistics and affine parameters as loaded (tiny batches)

# --- a short schedule
config.loss = "margin_softmax"  # ArcFace; "unpg" adds UNPG, which lost when fine-tuning 100 people (docs/finetune.md)
config.margin_list = (1.0, 0.5, 0.0)
config.lr = 0.1
config.batch_size = 64  # per rank: small sets give few batches per epoch
config.num_epoch = 10
config.warmup_epoch = 0
config.fp16 = True  # on GPU; the head stays fp32
config.num_workers = 4
config.frequent = 10
config.verbose = 200
config.save_all_states = True  # per-rank checkpoints: a stopped fine-tune resumes exactly
