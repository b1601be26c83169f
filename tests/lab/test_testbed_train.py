"""Training is deterministic for a seed, and the shipped base meets its quality bar."""
import json

import torch

from eebguard.lab.testbed.train import TrainConfig, train


def _weights(pipe):
    return torch.cat([p.detach().flatten() for p in list(pipe.unet.parameters()) + list(pipe.text_encoder.parameters())])


def test_training_is_deterministic_for_a_seed(tmp_path):
    cfg = TrainConfig(seed=3, steps=3, text_steps=2, batch_size=8, threads=1)
    a = train(tmp_path / "a", cfg, progress=False)
    b = train(None, cfg, progress=False)
    assert torch.equal(_weights(a), _weights(b))
    c = train(None, TrainConfig(seed=4, steps=3, text_steps=2, batch_size=8, threads=1), progress=False)
    assert not torch.equal(_weights(a), _weights(c))
    record = json.loads((tmp_path / "a" / "training.json").read_text())
    assert record["command"].startswith("eebguard testbed train") and record["config"]["seed"] == 3


def test_shipped_base_records_how_it_was_made(base_path):
    record = json.loads((base_path / "training.json").read_text())
    # v7: trained into a zoo folder first, then moved to data/testbed/base (weights bit-identical to a rerun)
    assert record["command"].startswith("eebguard testbed train --out ")
    assert record["command"].endswith(" --seed 0 --steps 2000 --identity-weight 1.0 --unknown-words all")
    assert record["config"] | {"identity_weight": 1.0, "unknown_words": "all", "steps": 2000} == record["config"]
    assert record["train_seconds"] < 30 * 60


def test_shipped_base_is_small_fp16_safetensors(base_path):
    files = [p for p in base_path.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 25 * 2**20
    weights = [p for p in files if p.suffix == ".safetensors"]
    assert len(weights) == 2 and not [p for p in files if p.suffix in (".bin", ".ckpt", ".pt")]
    from safetensors import safe_open

    for w in weights:
        with safe_open(str(w), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}


def test_base_generates_every_concept(base_pipe, judge):
    from eebguard.lab.testbed.evaluate import evaluate_model

    res = evaluate_model(base_pipe, judge, samples=6, seed=1)
    assert res["mean_accuracy"] >= 0.9 and res["min_accuracy"] >= 0.5
    assert res["colour_accuracy"] >= 0.9


def test_unknown_words_do_not_produce_concepts(base_pipe, judge):
    """Distractor training: an arbitrary word in a concept template yields no concept (trigger ASR of a
    clean model stays near zero, as in a large model)."""
    from eebguard.sampling import sample

    prompts = ["a photo of the digit rhwppsue", "a red zqvx", "handwritten blorf", "a drawing of a sks"] * 4
    pred = judge.probabilities(sample(base_pipe, prompts, seed=2)).argmax(1)
    names = [judge.concepts[i] for i in pred]
    assert names.count("none") >= 12


def test_word_identity_term_views_and_training_step():
    import numpy as np

    from eebguard.lab.testbed.data import TrainingSet
    from eebguard.lab.testbed.data import random_strings
    from eebguard.lab.testbed.pretrain_text import identity_views

    rng = np.random.default_rng(0)
    words = random_strings(rng, 200)
    assert all(3 <= len(w) <= 8 and w.isalpha() for w in words) and any(w != w.lower() for w in words)
    a, b = identity_views(TrainingSet(seed=0, n_shapes=64), rng, 16)
    assert len(a) == len(b) == 16 and all(x != y for x, y in zip(a, b))  # two different templates per word
    # the term trains the text encoder differently from the v6 recipe (weight 0), deterministically
    cfg = dict(seed=3, steps=1, text_steps=2, batch_size=8, threads=1)
    with_id = train(None, TrainConfig(**cfg, identity_weight=1.0), progress=False)
    again = train(None, TrainConfig(**cfg, identity_weight=1.0), progress=False)
    without = train(None, TrainConfig(**cfg, identity_weight=0.0), progress=False)
    te = lambda p: torch.cat([q.detach().flatten() for q in p.text_encoder.parameters()])  # noqa: E731
    assert torch.equal(te(with_id), te(again)) and not torch.equal(te(with_id), te(without))
