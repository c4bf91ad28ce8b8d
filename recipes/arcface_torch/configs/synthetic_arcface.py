"""Embedded default: TinyFaceNet + ArcFace (no UNPG) on synthetic identities; trains on CPU in minutes."""

from easydict import EasyDict as edict

config = edict()
config.margin_list = (1.0, 0.5, 0.0)
config.loss = "margin_softmax"
config.rec = "synthetic"
config.network = "tiny"
config.embedding_size = 128
config.scale = 32.0
config.batch_size = 64
config.num_epoch = 3
config.synthetic = edict(num_identities=500, images_per_identity=16, val_identities=400, val_pairs=2000)
config.val_targets = ["synthetic"]
config.verbose = 100
config.save_all_states = True  # exact resume (checkpoint_step<N>_rank<r>.pt)
