"""Settings of the loss comparison (benchmarks/compare_unpg.py): TinyFaceNet on the "hard" synthetic task
(head turns, occluders, harsh light) with 5% mislabelled samples, 400 steps. The "hard" renderer draws about
half as many images per second as "classic" (210 vs 410 on one busy core), so runs take longer than the
27 minutes that 7 methods x 3 seeds took on the classic task (2 idle CPU cores).
`--set synthetic.preset=classic` gives the frontal task of earlier releases."""

from easydict import EasyDict as edict

config = edict()
config.margin_list = (1.0, 0.5, 0.0)
config.loss = "margin_softmax"
config.rec = "synthetic"
config.network = "tiny"
config.embedding_size = 128
config.scale = 32.0
config.batch_size = 64
config.num_epoch = 4
config.synthetic = edict(
    num_identities=400, images_per_identity=16, val_identities=400, val_pairs=2000, label_noise=0.05, preset="hard"
)
config.val_targets = ["synthetic"]
config.num_workers = 0
config.frequent = 25
config.verbose = 100_000  # evaluate once, at the end
config.save_all_states = True  # exact resume (checkpoint_step<N>_rank<r>.pt)
config.margin_gradient = "exact"  # the gradient the README's comparison was measured with (the official UNPG code's)
