"""Training helpers for jobs that Baige runs (``baige[train]``).

``baige.train.hetero`` makes a plain PyTorch data-parallel script run across accelerator
types of different speeds: uneven local batches, gradients weighted by samples so the result
is that of a homogeneous run, and a hierarchical all-reduce (inside each chip type, then
between one leader per type). ``baige.train.plan`` reads and writes the plan file that says
which rank takes how much of the batch; it imports no torch. See ``docs/train.md``.
"""
