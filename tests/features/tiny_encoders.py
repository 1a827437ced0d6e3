"""Tiny random SigLIP / SigLIP 2 models saved the way the hub holds real ones (model, tokenizer,
image processor in one folder), so tests load them through the same code as a real hub id."""

from __future__ import annotations

from pathlib import Path

WORDS = "a the person opens closes door takes cup red green blue ball moves left right".split()


def _word_tokenizer(folder: Path, pad_to: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "</s>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>",
                                   model_max_length=pad_to)
    fast.model_input_names = ["input_ids"]  # as SigLIP's own tokenizer: no attention mask
    fast.save_pretrained(str(folder))
    return vocab


def make_tiny_siglip(folder: str | Path, version: int = 1, seed: int = 0, hidden: int = 32) -> Path:
    """Save a random SigLIP (``version=1``) or SigLIP 2 (``version=2``) with a word tokenizer."""
    import torch
    import transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    max_len = 16
    vocab = _word_tokenizer(folder, max_len)
    common = dict(hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=2, num_attention_heads=2)
    text = dict(common, vocab_size=len(vocab), max_position_embeddings=max_len, pad_token_id=0, eos_token_id=2)
    if version == 1:
        config = transformers.SiglipConfig(text_config=text, vision_config=dict(common, image_size=32, patch_size=8))
        model_cls = transformers.SiglipModel
        proc = transformers.SiglipImageProcessorPil(size={"height": 32, "width": 32})
    else:
        config = transformers.Siglip2Config(text_config=text, vision_config=dict(common, patch_size=8, num_patches=16))
        model_cls = transformers.Siglip2Model
        proc = transformers.Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16)
    torch.manual_seed(seed)
    model_cls(config).eval().save_pretrained(str(folder))
    proc.save_pretrained(str(folder))
    return folder
