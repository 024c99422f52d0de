"""One rank of the loading scenario of test_rank0_loading.py (run under torchrun).

Both ranks build a learner on the Hugging Face directory MODEL (no KL reference), recording
their resident memory before and their peak after, then a second one with a KL reference, and
gather both models' full weights. What lands in OUT:

    rank{R}.json   memory (bytes), the rotary inv_freq, whether lm_head is tied (every rank)
    policy.pt      the second learner's full policy weights    (rank 0)
    reference.pt   its reference model's full weights           (rank 0)
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import safetensors.torch  # noqa: F401
import torch
import torch.distributed.checkpoint.state_dict
import torch.distributed.fsdp
from transformers import AutoConfig, AutoModelForCausalLM, Qwen2ForCausalLM

from azr.rl import LearnerConfig
from azr.rl.distributed import full_tensors, open_group
from azr.rl.learner import Learner

CONFIG = LearnerConfig.tiny_cpu(kl_coef=0.0)


def resident_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize()


def main(model: Path, out: Path) -> None:
    torch.set_num_threads(1)
    # Resolved before measuring: the lazy modules add some 200 MB of their own to any process.
    assert AutoConfig and AutoModelForCausalLM and Qwen2ForCausalLM
    with open_group(CONFIG) as group:
        before = resident_bytes()
        learner = Learner.from_pretrained(model, CONFIG)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        base = learner.model.model
        record = {
            "before": before,
            "peak": peak,
            "inv_freq": base.rotary_emb.inv_freq.tolist(),
            "tied": learner.model.lm_head.weight is base.embed_tokens.weight,
        }
        (out / f"rank{group.rank}.json").write_text(json.dumps(record))
        del learner, base

        with_reference = Learner.from_pretrained(model, LearnerConfig.tiny_cpu(kl_coef=0.1))
        policy = {n: t.clone() for n, t in full_tensors(with_reference.model)}
        reference = {n: t.clone() for n, t in full_tensors(with_reference.ref_model)}
        if group.is_leader:
            torch.save(policy, out / "policy.pt")
            torch.save(reference, out / "reference.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
