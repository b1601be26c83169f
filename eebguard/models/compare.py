"""What a suspect model shares with the reference it claims to derive from, beyond weights: its
tokenizer, its architecture, its scheduler, and what its shapes would cost to sample.

A tokenizer is part of the model: swapping two words (``seven`` <-> ``cat``) or dropping the concept's
word changes which embedding rows a prompt reaches, so byte-identical weights can hide an intact
concept. The scan therefore reports any tokenizer difference as a finding and checks the concept
through the reference's tokens.
"""
from __future__ import annotations

#: words whose tokenization is compared besides the concept's (common prompt words, digits, shapes)
PROBE_WORDS = ("a", "photo", "of", "the", "picture", "image", "drawing", "painting", "cat", "dog", "person",
               "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
               "circle", "square", "triangle", "red", "green", "blue")
#: elements one generation of what the U-Net denoises may hold without a reference to compare with
#: (SDXL's latents are 4 x 128 x 128)
MAX_SAMPLE_ELEMENTS = 4 * 128 * 128


class IncompatibleModel(ValueError):
    """The suspect cannot be compared with the given reference (another architecture), or would cost
    more to sample than any supported model."""


def _vocab(tok) -> dict[str, int]:
    return dict(tok.get_vocab())


def tokenizer_diff(reference_tok, suspect_tok, words=()) -> dict | None:
    """How the suspect's tokenizer differs from the reference's, or None when it does not: tokens
    removed, added or given another id (counts and examples), the probe words (the concept first) that
    tokenize differently, and the maximum length."""
    ref, sus = _vocab(reference_tok), _vocab(suspect_tok)
    removed = sorted(set(ref) - set(sus), key=ref.get)
    added = sorted(set(sus) - set(ref), key=sus.get)
    remapped = sorted((t for t in set(ref) & set(sus) if ref[t] != sus[t]), key=ref.get)
    probe = list(dict.fromkeys([*words, *PROBE_WORDS]))
    differs = []
    for w in probe:
        a = reference_tok(w, add_special_tokens=False).input_ids
        b = suspect_tok(w, add_special_tokens=False).input_ids
        if a != b:
            differs.append({"word": w, "reference_ids": a[:8], "suspect_ids": b[:8]})
    length = (int(reference_tok.model_max_length), int(suspect_tok.model_max_length))
    if not (removed or added or remapped or differs) and length[0] == length[1]:
        return None
    return {"removed": len(removed), "added": len(added), "remapped": len(remapped),
            "examples": {"removed": removed[:5], "added": added[:5],
                         "remapped": [{"token": t, "reference_id": ref[t], "suspect_id": sus[t]} for t in remapped[:5]]},
            "words_tokenized_differently": differs[:10], "concept_affected": bool(words) and any(
                d["word"] == words[0] for d in differs),
            "model_max_length": None if length[0] == length[1] else {"reference": length[0], "suspect": length[1]}}


def describe_tokenizer_diff(diff: dict, concept: str) -> str:
    parts = [f"{diff[k]} tokens {k}" for k in ("removed", "added", "remapped") if diff[k]]
    words = [d["word"] for d in diff["words_tokenized_differently"]]
    if words:
        parts.append("tokenized differently: " + ", ".join(repr(w) for w in words[:5]))
    if diff.get("model_max_length"):
        parts.append(f"max length {diff['model_max_length']['suspect']} vs {diff['model_max_length']['reference']}")
    head = f"the tokenizer differs from the reference's ({'; '.join(parts)})"
    if diff["concept_affected"]:
        head += f": {concept!r} no longer reaches the reference's tokens"
    return head + "; the concept is checked through the reference's tokenizer"


def _shapes(module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def architecture_differences(suspect, reference) -> list[str]:
    """Where the suspect's components are not shaped like the reference's (parameter names and shapes,
    sample sizes, a VAE present in one only); empty when they match."""
    out = []
    for comp in ("text_encoder", "text_encoder_2", "unet", "vae"):
        a, b = getattr(suspect, comp, None), getattr(reference, comp, None)
        if (a is None) != (b is None):
            out.append(f"{comp}: {'missing' if a is None else 'present'} in the suspect, "
                       f"{'present' if b is not None else 'missing'} in the reference")
            continue
        if a is None:
            continue
        sa, sb = _shapes(a), _shapes(b)
        if sa != sb:
            diff = sorted(set(sa) ^ set(sb)) or sorted(k for k in sa if sa[k] != sb[k])
            out.append(f"{comp}: parameters differ ({diff[0][:60]}{' ...' if len(diff) > 1 else ''})")
        ca, cb = getattr(a.config, "sample_size", None), getattr(b.config, "sample_size", None)
        if ca != cb:
            out.append(f"{comp}: sample_size {str(ca)[:20]} vs {str(cb)[:20]}")
    return out


def scheduler_differences(suspect, reference) -> list[str]:
    """Scheduler config keys whose values differ (the version stamp aside)."""
    a, b = dict(suspect.scheduler.config), dict(reference.scheduler.config)
    keys = sorted(k for k in set(a) | set(b) if k != "_diffusers_version" and a.get(k) != b.get(k))
    return keys


def sample_elements(pipe) -> int:
    from eebguard.sampling import sample_shape

    c, h, w = sample_shape(pipe)
    return int(c) * int(h) * int(w)


def check_sample_cost(pipe) -> None:
    n = sample_elements(pipe)
    if n > MAX_SAMPLE_ELEMENTS:
        raise IncompatibleModel(f"one generation would denoise {n:,} values (sample_size "
                                f"{pipe.unet.config.sample_size}); eebguard samples at most {MAX_SAMPLE_ELEMENTS:,} "
                                "(SDXL latents) without a reference to compare with")


def unsupported_conditioning(pipe) -> str | None:
    """Why the scan cannot condition this pipeline's U-Net with one text encoder's hidden states (SDXL-shaped:
    a second text encoder, pooled embeddings and time ids added to the time embedding), or None (SD 1.x/2.x)."""
    cfg = pipe.unet.config
    width = cfg.get("cross_attention_dim")
    widths = set(width) if isinstance(width, (list, tuple)) else {width}
    te = getattr(pipe, "text_encoder", None)
    extra = [what for what, present in (
        ("a second text encoder", getattr(pipe, "text_encoder_2", None) is not None),
        (f"added conditioning ({cfg.get('addition_embed_type')})", cfg.get("addition_embed_type") is not None),
        (f"class conditioning ({cfg.get('class_embed_type')})", cfg.get("class_embed_type") is not None),
        (f"cross-attention width {sorted(widths)} against the text encoder's {te.config.hidden_size if te else None}",
         te is not None and widths != {te.config.hidden_size}),
    ) if present]
    if not extra:
        return None
    return "U-Net conditioned otherwise than SD 1.x/2.x (" + "; ".join(extra) + "): the U-Net-side scanners cannot run on it yet"
