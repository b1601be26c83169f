"""Baselines the detector is measured against, with the same evaluation:

* ``t2ishield``: the same calibrated estimator over T2IShield-style cross-attention assimilation
  features only (Wang et al., T2IShield, ECCV 2024, arXiv 2407.04215);
* ``sampling_probe``: black-box, no white-box features: generate images for a fixed set of candidate
  prompts (the concept's name and random vocabulary words in its templates) and ask the judge.
"""
from __future__ import annotations

from eebguard.scanners.word_probe import PROBE_FEATURES, sampling_probe  # noqa: F401  (the baseline is that scanner alone)

T2ISHIELD_FEATURES = ["attn.ftt_trigger_ratio", "attn.ftt_name_ratio", "attn.eos_share_trigger"]
