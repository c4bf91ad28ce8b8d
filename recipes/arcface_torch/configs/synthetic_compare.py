"""Settings of the UNPG comparison (benchmarks/compare_unpg.py): TinyFaceNet on synthetic identities with
5% mislabelled samples, 400 steps: 7 methods x 3 seeds in about half an hour on 2 idle CPU cores.
The baseline stays far from saturation (ArcFace TAR@FAR=1e-3 of a few percent on held-out identities)."""
from easydict import EasyDict as edict

config = edict()
config.margin_list = (1.0, 0.5, 0.0)
config.loss = 'margin_softmax'
config.rec = 'synthetic'
config.network = "tiny"
config.embedding_size = 128
config.scale = 32.0
config.batch_size = 64
config.num_epoch = 4
config.synthetic = edict(num_identities=400, images_per_identity=16, val_identities=400, val_pairs=2000, label_noise=0.05)
config.val_targets = ["synthetic"]
config.num_workers = 0
config.frequent = 25
config.verbose = 100_000  # evaluate once, at the end
config.save_all_states = True  # exact resume (checkpoint_rank<r>.pt)
config.margin_gradient = "exact"  # the gradient the README's comparison was measured with (the official UNPG code's)
