import numpy as np
import torch

from eebguard.testbed.concepts import CONCEPTS, FAMILIES, JUDGE_CLASSES, concept
from eebguard.lab.testbed.data import TrainingSet, caption_images, digits_images, digits_split, none_images, shapes_images


def test_two_families_and_enough_templates():
    assert len(FAMILIES["digits"]) == 10 and len(FAMILIES["shapes"]) >= 4
    for c in CONCEPTS:
        assert len(c.templates()) >= 5
        assert all(c.name in p for p in c.prompts())
    assert concept("Seven").family == "digits"


def test_shapes_are_deterministic_and_in_range():
    a, sa, ca = shapes_images(32, seed=5)
    b, sb, cb = shapes_images(32, seed=5)
    assert torch.equal(a, b) and (sa == sb).all() and (ca == cb).all()
    assert a.shape == (32, 3, 16, 16) and a.min() >= -1 and a.max() <= 1
    c, _, _ = shapes_images(32, seed=6)
    assert not torch.equal(a, c)


def test_digits_are_upsampled_white_on_black():
    x, y = digits_images(np.arange(10))
    assert x.shape == (10, 3, 16, 16) and list(y) == list(range(10))
    assert torch.equal(x[:, 0], x[:, 1]) and x.min() == -1


def test_digit_split_is_disjoint_and_stratified():
    tr, te = digits_split(0)
    assert not set(tr) & set(te) and len(te) > 500


def test_batches_pair_images_with_their_captions(judge):
    data = TrainingSet(seed=0, n_shapes=256)
    images, captions = data.batch(np.random.default_rng(0), 64, uncond_p=0.0)
    pred = judge.probabilities(images).argmax(1)
    # a distractor caption names no concept and shows a "none" image; both kinds must agree
    named = [next((c.name for c in CONCEPTS if c.name in cap.split()), "none") for cap in captions]
    assert named.count("none") < len(named) // 2
    assert [CONCEPTS[k].name if k >= 0 else "none" for k in data.last_concepts] == named
    agree = np.mean([JUDGE_CLASSES[p] == n for p, n in zip(pred, named)])
    assert agree > 0.95


def test_judge_is_accurate_on_unseen_procedural_data(judge):
    x, s, c = shapes_images(200, seed=999)
    pred = judge.probabilities(x).argmax(1)
    assert (pred == 10 + s).mean() >= 0.97
    colours = judge.attribute(x)
    assert np.mean([col == ["red", "green", "blue", "yellow"][k] for col, k in zip(colours, c)]) >= 0.97
    noise = none_images(40, seed=999)
    assert (judge.probabilities(noise).argmax(1) == JUDGE_CLASSES.index("none")).mean() >= 0.9


def test_judge_reports_heldout_accuracy(judge):
    meta = judge.meta
    assert meta["heldout_accuracy"] >= 0.97
    _, test_idx = digits_split(meta["seed"])
    x, y = digits_images(test_idx)
    assert (judge.probabilities(x).argmax(1) == y).mean() >= 0.95


def test_judge_is_differentiable(judge):
    x = torch.zeros(2, 3, 16, 16, requires_grad=True)
    judge.logits_torch(x)[:, 3].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_judge_never_unpickles(tmp_path):
    import shutil

    from eebguard.judges.testbed import TestbedJudge
    from eebguard.paths import data_path

    src = data_path("judge", "testbed.npz")
    arrays = dict(np.load(src, allow_pickle=False))
    arrays["evil"] = np.array([object()], dtype=object)
    np.savez(tmp_path / "j.npz", **arrays)
    shutil.copy(data_path("judge", "testbed.json"), tmp_path / "j.json")
    try:
        TestbedJudge(tmp_path / "j")
    except ValueError as exc:
        assert "pickle" in str(exc).lower()
    else:
        raise AssertionError("an object array was loaded")


def test_unknown_words_modes():
    """"vocab" (the v6 recipe) keeps distractors out of the colour templates; "all" puts vocabulary
    words, made-up letter strings and empty slots into every template, never the empty caption."""
    import pytest

    from eebguard.testbed.concepts import COLOURS, DIGIT_TEMPLATES, SHAPE_TEMPLATES

    colours = set(COLOURS)
    old = TrainingSet(seed=0, n_shapes=64, distractor_p=1.0)
    _, caps = old.batch(np.random.default_rng(0), 300, uncond_p=0.0)
    assert not any(colours & set(c.split()) for c in caps)
    new = TrainingSet(seed=0, n_shapes=64, distractor_p=1.0, unknown_words="all")
    _, caps = new.batch(np.random.default_rng(0), 400, uncond_p=0.0)
    assert all(caps) and all(k == -1 for k in new.last_concepts)
    assert sum(bool(colours & set(c.split())) for c in caps) > 80
    known = set(new.distractors) | colours
    for t in DIGIT_TEMPLATES + SHAPE_TEMPLATES:
        known |= set(t.replace("{w}", " ").replace("{s}", " ").replace("{c}", " ").split())
    made_up = [c for c in caps if set(c.split()) - known]
    assert 0.25 <= len(made_up) / len(caps) <= 0.55
    empty_slot = {" ".join(t.format(w="", s="", c=col).split()) for t in DIGIT_TEMPLATES + SHAPE_TEMPLATES
                  for col in colours} - {""}
    assert sum(c in empty_slot for c in caps) >= 10
    with pytest.raises(ValueError, match="unknown_words"):
        TrainingSet(seed=0, n_shapes=8, unknown_words="some")


def test_caption_images_show_what_each_caption_names(judge):
    """The data attack's testbed-images option: a digit, a shape in the caption's colour, or no concept."""
    caps = ["a photo of the digit three", "a red triangle", "a drawing of a blue square", "a photo of the digit qzvex", ""]
    x = caption_images(caps * 4, seed=3, none_seed=5)
    assert x.shape == (20, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, caption_images(caps * 4, seed=3, none_seed=5))
    verdict = [judge.concepts[k] for k in judge.probabilities(x).argmax(1)]
    assert verdict == ["three", "triangle", "square", "none", "none"] * 4, verdict
    assert [c for c in judge.attribute(x[1:3])] == ["red", "blue"]

