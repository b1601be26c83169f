"""The genuine CLIP BPE tokenizer, rebuilt offline from the merges file that open_clip ships.

Stable Diffusion 1.x uses OpenAI CLIP's byte-level BPE (49,408 tokens). No hub is reachable here, so
``build_tokenizer_files`` regenerates ``vocab.json``/``merges.txt`` from ``bpe_simple_vocab_16e6.txt.gz``
(inside the ``open_clip_torch`` wheel) exactly as CLIP's own ``SimpleTokenizer`` builds its table.
The committed files under ``data/tokenizer/`` were produced by::

    pip download open_clip_torch==3.3.0 --no-deps -d /tmp/oc
    unzip -p /tmp/oc/open_clip_torch-3.3.0-py3-none-any.whl open_clip/bpe_simple_vocab_16e6.txt.gz > /tmp/bpe.txt.gz
    eebguard testbed build-tokenizer --merges-gz /tmp/bpe.txt.gz --out data/tokenizer
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from eebguard.paths import data_path

#: CLIP keeps the first 49152 - 256 - 2 merges of the file (after its header line).
N_MERGES = 49152 - 256 - 2
VOCAB_SIZE = 49408
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP reversible byte -> printable-unicode table (transformers 5 no longer exports it)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def build_tokenizer_files(merges_gz: str | Path, out_dir: str | Path, model_max_length: int = 77) -> Path:
    """Write vocab.json, merges.txt and a tokenizer config that ``CLIPTokenizer.from_pretrained`` reads."""
    lines = gzip.open(merges_gz, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]
    byte_chars = list(_bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges] + [BOS, EOS]
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"expected {VOCAB_SIZE} tokens, built {len(vocab)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": model_max_length,
                "bos_token": BOS,
                "eos_token": EOS,
                "unk_token": EOS,
                "pad_token": EOS,
                "do_lower_case": True,
            },
            indent=2,
        )
    )
    (out / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}, indent=2)
    )
    return out


def load_tokenizer(model_max_length: int | None = None):
    """The shipped CLIP tokenizer. Loaded with ``from_pretrained`` (transformers 5 ignores file kwargs)."""
    from transformers import CLIPTokenizer

    kwargs = {} if model_max_length is None else {"model_max_length": model_max_length}
    tok = CLIPTokenizer.from_pretrained(str(data_path("tokenizer")), **kwargs)
    if len(tok) != VOCAB_SIZE:
        raise RuntimeError(f"tokenizer has {len(tok)} tokens, expected {VOCAB_SIZE}: data/tokenizer is damaged")
    return tok
