"""Evaluation of a policy (held-out tasks at CPU scale: :mod:`azr.eval.heldout`)."""
