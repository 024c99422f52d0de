"""Evaluation of a policy: the paper's benchmarks (``azr eval``) and held-out self-play tasks
at CPU scale (:mod:`azr.eval.heldout`)."""
