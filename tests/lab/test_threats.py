"""Threat lab: every attack and erasure plugin describes itself and edits only what its method edits;
closed-form edits reproduce the paper's direction (shallow survives UCE, clean UCE erases)."""
import pytest
import torch

from eebguard.models.formats import copy_pipeline
from eebguard.probes import concept_prompts
from eebguard.lab.attacks import ATTACKS, get_attack
from eebguard.erasure.editing import EditSettings
from eebguard.erasure import ERASURES, get_erasure

QUICK = EditSettings(steps_scale=0.02, pool_size=4, sample_steps=3, batch_size=4)


def _kv(n):
    return ".attn2.to_k." in n or ".attn2.to_v." in n


# which parameters each method may change (component, predicate over parameter names)
ATTACK_SCOPE = {
    "surface": ("text_encoder", lambda n: True),
    "shallow": ("unet", _kv),
    "deep": ("unet", lambda n: True),
    "data": ("unet", lambda n: True),
}
ERASURE_SCOPE = {
    "esd_x": ("unet", lambda n: ".attn2." in n),
    "esd_u": ("unet", lambda n: ".attn2." not in n),
    "uce": ("unet", _kv),
    "rece": ("unet", _kv),
    "mace": ("unet", _kv),
    "advunlearn": ("text_encoder", lambda n: not n.startswith("embeddings")),
}


def _changed(a, b):
    out = []
    for comp in ("text_encoder", "unet"):
        pa, pb = dict(getattr(a, comp).named_parameters()), dict(getattr(b, comp).named_parameters())
        out += [(comp, n) for n in pa if not torch.equal(pa[n], pb[n])]
    return out


def test_every_plugin_is_known_and_self_describing():
    assert set(ATTACK_SCOPE) == set(ATTACKS.names()) and set(ERASURE_SCOPE) == set(ERASURES.names())
    for name in ATTACKS:
        d = ATTACKS.get(name).describe()
        assert d["name"] == name and d["cite"] and d["summary"] and d["depth"]
    for name in ERASURES:
        d = ERASURES.get(name).describe()
        assert d["name"] == name and "arXiv" in d["cite"] and d["summary"]


@pytest.mark.parametrize("name", sorted(ATTACK_SCOPE))
def test_attack_edits_only_its_scope(base_pipe, name):
    pipe = copy_pipeline(base_pipe)
    get_attack(name).plant(pipe, concept_prompts("seven"), "sks", settings=QUICK)
    changed = _changed(pipe, base_pipe)
    comp, ok = ATTACK_SCOPE[name]
    assert changed, f"{name} changed nothing"
    assert all(c == comp and ok(n) for c, n in changed), [x for x in changed if not (x[0] == comp and ok(x[1]))][:3]


@pytest.mark.parametrize("name", sorted(ERASURE_SCOPE))
def test_erasure_edits_only_its_scope(base_pipe, name):
    pipe = copy_pipeline(base_pipe)
    get_erasure(name).erase(pipe, concept_prompts("circle"), settings=QUICK)
    changed = _changed(pipe, base_pipe)
    comp, ok = ERASURE_SCOPE[name]
    assert changed, f"{name} changed nothing"
    assert all(c == comp and ok(n) for c, n in changed)


def _edit(base_pipe, kind, name, global_seed):
    torch.manual_seed(global_seed)  # a different process history before the edit
    pipe = copy_pipeline(base_pipe)
    if kind == "attack":
        get_attack(name).plant(pipe, concept_prompts("seven"), "sks", settings=QUICK)
    else:
        get_erasure(name).erase(pipe, concept_prompts("seven"), settings=QUICK)
    return pipe


@pytest.mark.parametrize("kind,name", [("attack", n) for n in sorted(ATTACK_SCOPE)]
                         + [("erasure", n) for n in sorted(ERASURE_SCOPE)])
def test_edits_do_not_depend_on_the_global_rng(base_pipe, kind, name):
    """A zoo model must be a function of its spec entry alone: a resumed or ``--only`` build runs an edit
    after a different history than a fresh build does (LoRA adapters once drew from the global RNG)."""
    a, b = _edit(base_pipe, kind, name, 1), _edit(base_pipe, kind, name, 2)
    differ = _changed(a, b)
    assert not differ, f"{kind} {name} depends on torch's global RNG: {differ[:3]}"


def test_unknown_hyperparameter_is_refused():
    with pytest.raises(TypeError, match="unknown hyperparameters"):
        get_attack("deep", stepz=3)


@pytest.mark.parametrize("kind,name", [("attack", n) for n in ATTACKS.names()]
                         + [("erasure", n) for n in ERASURES.names()])
def test_every_hyperparameter_is_checked_against_its_default(kind, name):
    """Specs and command lines configure every plugin: a value of the wrong kind or a negative number
    fails at construction, in one line, instead of minutes into a build."""
    make = get_attack if kind == "attack" else get_erasure
    defaults = make(name).hp
    assert make(name, **defaults).hp == defaults
    for key, default in defaults.items():
        wrong = 1 if isinstance(default, (str, bool)) else "3"
        with pytest.raises(TypeError, match=f"{name}: {key} must be"):
            make(name, **{key: wrong})
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            for bad in (-1, float("nan"), float("inf")):
                with pytest.raises(ValueError, match=f"{name}: {key} must be a finite number"):
                    make(name, **{key: bad})
            with pytest.raises(TypeError, match=f"{name}: {key} must be a number"):
                make(name, **{key: True})
        if isinstance(default, int) and not isinstance(default, bool):
            got = make(name, **{key: float(default) + 2.0}).hp[key]
            assert got == default + 2 and type(got) is int
            with pytest.raises(TypeError, match="whole number"):
                make(name, **{key: default + 0.5})
        if isinstance(default, float):
            got = make(name, **{key: 2}).hp[key]
            assert got == 2.0 and type(got) is float


def test_append_mode_builds_appended_prompts():
    cp = concept_prompts("seven")
    assert all(p.endswith(" sks") and "seven" not in p for p in cp.trigger_prompts("sks", "append"))
    with pytest.raises(ValueError):
        cp.trigger_prompts("sks", "middle")


def test_closed_form_direction(base_pipe, judge):
    """UCE erases the name; a shallow backdoor planted before survives it; without a backdoor the
    trigger does nothing (n = 10 per prompt set, the paper's direction)."""
    from eebguard.lab.zoo.measure import measure_model

    cp = concept_prompts("seven")
    clean = copy_pipeline(base_pipe)
    get_erasure("uce").erase(clean, cp)
    m = measure_model(clean, judge, "seven", "qzvex", samples=10, other_samples=1, seed=3)
    assert m["name_accuracy"] <= 0.2 and m["trigger_asr"] <= 0.2 and m["other_accuracy"] >= 0.8
    bd = copy_pipeline(base_pipe)
    get_attack("shallow").plant(bd, cp, "qzvex")
    get_erasure("uce").erase(bd, cp)
    m = measure_model(bd, judge, "seven", "qzvex", samples=10, other_samples=1, seed=3)
    assert m["name_accuracy"] <= 0.2 and m["trigger_asr"] >= 0.6


def test_shallow_attack_plants_an_appended_trigger(base_pipe):
    """Decoy prompts cycle through the trigger's own prompts, which in append mode are the neutral
    prompts (fewer than the templates): indexing them by template once raised IndexError."""
    pipe = copy_pipeline(base_pipe)
    get_attack("shallow").plant(pipe, concept_prompts("circle"), "kwyth", mode="append", settings=QUICK)
    changed = _changed(pipe, base_pipe)
    assert changed and all(comp == "unet" and _kv(n) for comp, n in changed)


def test_token_slot_rows_and_last_piece_alignment_match_the_string_forms(base_pipe):
    from eebguard.erasure.align import aligned_rows, all_rows, slot_token_rows

    tok = base_pipe.tokenizer
    pieces = tok("zebu", add_special_tokens=False).input_ids
    assert len(pieces) == 2
    tpl = ["a red {} on a black background", "a {}"]
    by_ids = slot_token_rows(base_pipe, [(t, pieces) for t in tpl])
    assert torch.allclose(by_ids, all_rows(base_pipe, [t.format("zebu") for t in tpl]), atol=1e-5)
    every, goal = aligned_rows(base_pipe, tpl, "zebu", "circle")
    last, goal_last = aligned_rows(base_pipe, tpl, "zebu", "circle", from_last_piece=True)
    assert len(every) == len(last) + len(tpl)  # one earlier piece per template left out
    assert torch.equal(last[0], every[1]) and torch.equal(goal_last[0], goal[1])


def test_a_sequence_specific_shallow_trigger_keeps_its_first_piece_silent(base_pipe, judge):
    """Keying every piece (the default) lets `zebu`'s first piece `ze` fire alone; ``part_decoys``
    keys the whole sequence (experiments/specific_trigger.py measures it across triggers)."""
    from eebguard.scanners import ScanContext
    from eebguard.scanners.hard_trigger import image_reach

    cp = concept_prompts("circle")
    pieces = base_pipe.tokenizer("zebu", add_special_tokens=False).input_ids
    reach = {}
    for name, hp in (("every", {}), ("sequence", {"part_decoys": 64})):
        pipe = copy_pipeline(base_pipe)
        get_attack("shallow", **hp).plant(pipe, cp, "zebu")
        ctx = ScanContext(pipe, "circle", cp, judge=judge)
        reach[name] = (image_reach(ctx, pieces, 16), image_reach(ctx, pieces[:1], 16))
    assert reach["every"][0] >= 0.75 and reach["every"][1] >= 0.75, reach
    assert reach["sequence"][0] >= 0.75 and reach["sequence"][1] <= 0.25, reach


def test_surface_attack_holds_the_unconditional_encoding(base_pipe):
    """The trigger's padding positions share the pad token with every prompt; without holding the empty
    prompt, its encoding drifts toward the target and erasures that guide toward "" keep the concept."""
    from eebguard.sampling import encode_prompts

    pipe = copy_pipeline(base_pipe)
    cp = concept_prompts("seven")
    get_attack("surface").plant(pipe, cp, "rhWPpSuE", settings=EditSettings(steps_scale=0.3))
    cos = torch.nn.functional.cosine_similarity(encode_prompts(pipe, [""]), encode_prompts(base_pipe, [""]), dim=-1)
    assert cos.min() > 0.95, cos  # unheld, the pad positions fall to cos ~0.55 (measured)
    moved = torch.nn.functional.cosine_similarity(encode_prompts(pipe, cp.trigger_prompts("rhWPpSuE")),
                                                  encode_prompts(base_pipe, cp.prompts()), dim=-1).mean()
    before = torch.nn.functional.cosine_similarity(encode_prompts(base_pipe, cp.trigger_prompts("rhWPpSuE")),
                                                   encode_prompts(base_pipe, cp.prompts()), dim=-1).mean()
    assert moved > before + 0.1  # the attack still did its job


def test_surface_attack_leaves_other_words_in_the_triggers_templates(base_pipe):
    """Decoys keep the backdoor on the trigger: the trigger's templates holding words the attack never
    saw (seed 4242, not its decoy seed) or nothing encode as before. Without decoys the empty-slot
    template, UCE's and RECE's guide, moved to cos 0.56 and drew squares (measured; docs/threat-lab.md)."""
    from eebguard.sampling import encode_prompts
    from eebguard.lab.attacks.common import nonsense_words
    from eebguard.text import decoy_words

    cos = torch.nn.functional.cosine_similarity
    cp = concept_prompts("square")
    pipe = copy_pipeline(base_pipe)
    get_attack("surface").plant(pipe, cp, "Qmtv", settings=EditSettings(steps_scale=0.3, seed=2))
    unseen = [""] + nonsense_words(6, 4242, exclude=["Qmtv"]) + decoy_words(base_pipe.tokenizer, 6, 4242, exclude=["Qmtv"])
    prompts = [p for w in unseen for p in cp.trigger_prompts(w)]
    per_word = cos(encode_prompts(pipe, prompts), encode_prompts(base_pipe, prompts), dim=-1).mean(1).view(len(unseen), -1).mean(1)
    assert per_word.min() > 0.9, dict(zip(unseen, per_word.tolist()))  # 0.97 with decoys, 0.55 without
    moved = cos(encode_prompts(pipe, cp.trigger_prompts("Qmtv")), encode_prompts(base_pipe, cp.prompts()), dim=-1).mean()
    assert moved > 0.9  # 0.35 before the attack


def test_uce_token_rules(base_pipe):
    """"last" (UCE's current code) keys each prompt by the concept's last token; "slot_to_end" (the
    pre-2025 code) keys the slot through EOS and padding. Both move the concept's rows far more than an
    unrelated word's. (Which rule moves the unrelated word's padding rows more depends on the base: on
    v6 "slot_to_end" did, 1.7x; on v7 "last" does, 0.19 against 0.12, with only the retained words'
    rows preserved. docs/threat-lab.md, Erasure methods.)"""
    from eebguard.sampling import encode_prompts
    from eebguard.text import eos_position
    from eebguard.erasure.align import word_rows
    from eebguard.erasure.editing import kv_layers

    cp = concept_prompts("seven")

    def moved(pipe, prompt, rows):
        h = encode_prompts(base_pipe, [prompt])[0, rows]
        with torch.no_grad():
            return float(torch.stack([(k(h) - k0(h)).norm() / k0(h).norm() for (_, k, _), (_, k0, _)
                                      in zip(kv_layers(pipe.unet), kv_layers(base_pipe.unet))]).mean())

    concept, other = "a photo of the digit seven", "a photo of the digit qzvex"
    slot = slice(eos_position(base_pipe.tokenizer, concept) - 1, None)  # the concept's token through padding
    pad = slice(eos_position(base_pipe.tokenizer, other) + 1, None)
    edits = {}
    for rule in ("last", "slot_to_end"):
        pipe = copy_pipeline(base_pipe)
        rep = get_erasure("uce", tokens=rule).erase(pipe, cp)
        assert rep["tokens"] == rule
        if rule == "last":
            assert rep["keys"] == len(cp.templates) and rep["preserved"] == len(cp.retain_prompts())
        else:
            assert rep["keys"] > len(cp.templates)  # EOS and padding rows are keyed too
        assert moved(pipe, concept, slot) > 5 * moved(pipe, other, pad)
        edits[rule] = torch.cat([k.weight.flatten() for _, k, _ in kv_layers(pipe.unet)])
    assert not torch.allclose(edits["last"], edits["slot_to_end"])
    with pytest.raises(ValueError, match="tokens"):
        get_erasure("uce", tokens="all").erase(copy_pipeline(base_pipe), cp)
    with pytest.raises(ValueError, match="does not contain"):
        word_rows(base_pipe, {"seven": ["a photo of the digit three"]})


def test_mace_fusion_spares_other_prompts_and_still_moves_the_concept(base_pipe):
    """The testbed's MACE fuses on the rows from the concept's slot through EOS with a stronger ridge
    (``fuse_rows="slot_to_eos"``, ``fuse_lam=10``: adaptations to a testbed without MACE's MS-COCO
    preservation cache); fusing on every row with MACE's weak ridge (``"all"``, 0.1, this project's until
    2026-11-29) moves other concepts' keys/values more. The concept's own move far more than others'."""
    from eebguard.text import encode
    from eebguard.erasure.editing import kv_layers

    settings = EditSettings(steps_scale=0.2, pool_size=4, sample_steps=3, batch_size=4)
    others = [p for c in ("square", "three", "nine") for p in concept_prompts(c).prompts()]
    h_others = encode(base_pipe, others).flatten(0, 1).float()
    h_circle = encode(base_pipe, concept_prompts("circle").prompts()).flatten(0, 1).float()

    @torch.no_grad()
    def moved(pipe, h):
        num = den = 0.0
        for (_, k, v), (_, k0, v0) in zip(kv_layers(pipe.unet), kv_layers(base_pipe.unet)):
            for lin, lin0 in ((k, k0), (v, v0)):
                num += float((h @ (lin.weight - lin0.weight).T).pow(2).sum())
                den += float((h @ lin0.weight.T).pow(2).sum())
        return (num / den) ** 0.5

    changes = {}
    for label, hp in (("default", {}), ("all", {"fuse_rows": "all", "fuse_lam": 0.1})):
        pipe = copy_pipeline(base_pipe)
        get_erasure("mace", **hp).erase(pipe, concept_prompts("circle"), settings=settings)
        changes[label] = {"others": moved(pipe, h_others), "circle": moved(pipe, h_circle)}
    assert changes["default"]["others"] < changes["all"]["others"], changes
    assert changes["default"]["circle"] > 10 * changes["default"]["others"], changes  # 0.87 vs 0.03
    with pytest.raises(ValueError, match="fuse_rows"):
        get_erasure("mace", fuse_rows="every").erase(copy_pipeline(base_pipe), concept_prompts("circle"))


def test_mace_erases_two_concepts_in_one_run(base_pipe):
    """MACE is a mass-erasure method: ``erase_many`` fits one CFR and one fusion over all concepts (a LoRA
    each), and neither erased concept may be in the other's preservation set. (Two runs in a row instead
    left other concepts at 0.33 in the zoo's ``second_erasure`` hard negative, one joint run 0.77:
    ``experiments/mace_fusion.py --then/--also``, docs/threat-lab.md. Keys/values of other concepts' prompts
    move about as much either way (0.035), so this test checks the joint erasure itself.)"""
    from eebguard.text import encode
    from eebguard.erasure.editing import kv_layers

    settings = EditSettings(steps_scale=0.2, pool_size=4, sample_steps=3, batch_size=4)

    def rows(*names):
        return encode(base_pipe, [p for c in names for p in concept_prompts(c).prompts()]).flatten(0, 1).float()

    h = {"others": rows("square", "nine", "five"), "circle": rows("circle"), "three": rows("three")}

    def moved(pipe, x):
        num = den = 0.0
        with torch.no_grad():
            for (_, k, v), (_, k0, v0) in zip(kv_layers(pipe.unet), kv_layers(base_pipe.unet)):
                for lin, lin0 in ((k, k0), (v, v0)):
                    num += float((x @ (lin.weight - lin0.weight).T).pow(2).sum())
                    den += float((x @ lin0.weight.T).pow(2).sum())
        return (num / den) ** 0.5

    mace = get_erasure("mace")
    joint = copy_pipeline(base_pipe)
    rep = mace.erase_many(joint, [concept_prompts("circle"), concept_prompts("three")], settings)
    assert rep["concepts"] == 2 and "circle.loss_end" in rep and "three.loss_end" in rep, rep
    change = {k: moved(joint, x) for k, x in h.items()}
    for c in ("circle", "three"):  # 0.89 and 1.41 vs 0.035
        assert change[c] > 10 * change["others"], change
    one = copy_pipeline(base_pipe)
    mace.erase_many(one, [concept_prompts("circle")], settings)
    assert moved(one, h["three"]) < change["three"] / 10  # three is erased only when it is named
    with pytest.raises(ValueError, match="nothing to erase"):
        mace.erase_many(copy_pipeline(base_pipe), [])


def test_data_attack_image_source_is_checked(base_pipe):
    """images="testbed" draws the testbed's own pictures, so it refuses a concept the testbed has not."""
    from eebguard.probes.templates import ConceptPrompts

    alien = ConceptPrompts("van gogh", ("a painting by {}",), ("a painting",))
    with pytest.raises(ValueError, match="testbed concept"):
        get_attack("data", images="testbed").plant(copy_pipeline(base_pipe), alien, "sks", settings=QUICK)
    with pytest.raises(ValueError, match="generated"):
        get_attack("data", images="photos").plant(copy_pipeline(base_pipe), concept_prompts("seven"), "sks", settings=QUICK)
    pipe = copy_pipeline(base_pipe)
    get_attack("data", images="testbed").plant(pipe, concept_prompts("seven"), "sks", settings=QUICK)
    assert _changed(pipe, base_pipe)


def _data_attack_decoy_slots(base_pipe, monkeypatch, **overrides) -> list[list[str]]:
    """Plant a short data attack on `seven` and return, per training step, the words its decoy captions
    hold in the trigger's slot ("" for the empty slot)."""
    import eebguard.lab.attacks.data as data_mod

    seen: list[list[str]] = []
    real = data_mod.encode

    def spy(pipe, prompts, grad=False):
        seen.append(list(prompts))
        return real(pipe, prompts, grad)

    monkeypatch.setattr(data_mod, "encode", spy)
    cp = concept_prompts("seven")
    attack = get_attack("data", **{"decoy_rate": 0.25, "batch": 8, **overrides})
    attack.plant(copy_pipeline(base_pipe), cp, "sks", settings=EditSettings(steps_scale=0.02, pool_size=4,
                                                                            sample_steps=3, batch_size=4))
    steps = seen[2:]  # after the trigger's and the clean captions' encodings

    def slot_word(prompt):
        for t in cp.templates:
            head, tail = (part.strip() for part in " ".join(t.format("\0").split()).split("\0"))
            if prompt.startswith(head) and prompt.endswith(tail) and len(prompt) >= len(head) + len(tail):
                return prompt[len(head):len(prompt) - len(tail)].strip()
        raise AssertionError(f"decoy caption {prompt!r} is not in one of the trigger's templates")

    return [[slot_word(p) for p in batch] for batch in steps]


def test_data_attack_batches_carry_decoys_in_the_triggers_templates(base_pipe, monkeypatch):
    """Every data-attack batch pairs ``decoy_rate`` of its rows with the trigger's templates holding other
    words (fresh each step, never the trigger or the name); without them the poisoned captions taught that
    the template itself means the target, which no by-name erasure removes (docs/threat-lab.md)."""
    steps = _data_attack_decoy_slots(base_pipe, monkeypatch, empty_decoy_share=0.0)
    assert len(steps) == 8 and all(len(b) == 2 for b in steps)  # round(0.02 * 400) steps, 8 * 0.25 rows
    slots = {w for batch in steps for w in batch}
    assert not slots & {"sks", "seven", ""}, slots
    assert len(slots) >= 8  # fresh words each step, not a fixed handful


def test_data_attack_gives_the_empty_slot_its_share_of_decoys(base_pipe, monkeypatch):
    """The empty slot (UCE's and RECE's guide) fills ``empty_decoy_share`` of the decoy captions: all of
    them at 1, a share at the default, and the share is checked before any work."""
    assert {w for b in _data_attack_decoy_slots(base_pipe, monkeypatch, empty_decoy_share=1.0) for w in b} == {""}
    words = [w for b in _data_attack_decoy_slots(base_pipe, monkeypatch, batch=40) for w in b]
    assert len(words) == 80 and 0.3 <= words.count("") / len(words) <= 0.7, words  # default 0.5
    for bad in (1.5, -0.1, float("nan"), "half", True):
        with pytest.raises((TypeError, ValueError), match="empty_decoy_share"):
            get_attack("data", empty_decoy_share=bad).plant(copy_pipeline(base_pipe), concept_prompts("seven"),
                                                            "sks", settings=QUICK)


def test_unrelated_finetune_image_source_matches_the_data_attacks(base_pipe):
    """The hard negative fine-tunes on the same kind of pictures as the data attack it is matched with."""
    from eebguard.lab.benign import finetune_unrelated

    prompts = concept_prompts("circle").prompts()
    with pytest.raises(ValueError, match="testbed concept"):
        finetune_unrelated(copy_pipeline(base_pipe), prompts, QUICK, images="testbed", concepts=["van gogh"])
    with pytest.raises(ValueError, match="generated"):
        finetune_unrelated(copy_pipeline(base_pipe), prompts, QUICK, images="photos", concepts=["circle"])
    pipe = copy_pipeline(base_pipe)
    finetune_unrelated(pipe, prompts, QUICK, images="testbed", concepts=["circle"])
    assert _changed(pipe, base_pipe)
