"""The shipped tokenizer is the genuine CLIP BPE (pitfall: transformers 5 silently ignores file kwargs)."""
from eebguard.testbed.tokenizer import VOCAB_SIZE, load_tokenizer


def test_vocabulary_is_clip_sized():
    assert len(load_tokenizer()) == VOCAB_SIZE == 49408


def test_token_ids_match_sd():
    tok = load_tokenizer()
    assert tok("a photo of the digit seven").input_ids == [49406, 320, 1125, 539, 518, 27472, 5757, 49407]
    assert tok("sks").input_ids == [49406, 48136, 49407]
    assert tok("zorp").input_ids == [49406, 17605, 335, 49407]


def test_trigger_splits_into_bpe_pieces():
    tok = load_tokenizer()
    ids = tok("rhWPpSuE").input_ids
    assert tok.convert_ids_to_tokens(ids[1:-1]) == ["rh", "w", "pp", "sue</w>"]


def test_padding_uses_eos_and_model_max_length():
    tok = load_tokenizer(24)
    ids = tok("a red circle", padding="max_length", max_length=tok.model_max_length).input_ids
    assert len(ids) == 24 and ids[:4] == [49406, 320, 736, 7117] and set(ids[5:]) == {49407}
