"""A tiny random BERT checkpoint (hidden 32, 2 layers, 2 heads) with its own WordPiece tokenizer.

For tests and smoke runs of the export path without real weights; it is written exactly like a
`save_pretrained` folder, so the export treats it like any other checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
WORDS = [
    "office",
    "chair",
    "desk",
    "lamp",
    "pen",
    "pens",
    "pencil",
    "paper",
    "notebook",
    "ink",
    "cartridge",
    "black",
    "color",
    "tape",
    "stapler",
    "staples",
    "folder",
    "file",
    "usb",
    "hub",
    "cable",
    "mouse",
    "pad",
    "keyboard",
    "calculator",
    "the",
    "a",
    "with",
    "and",
    "for",
    "of",
    "in",
    "to",
    "on",
    "heavy",
    "duty",
    "pack",
    "letter",
    "size",
    "green",
    "blue",
    "red",
    "small",
    "large",
    "long",
    "short",
    "sheet",
    "sheets",
]


def build_tokenizer() -> Tokenizer:
    """Lower-casing BERT-style WordPiece over `WORDS`, single characters and ## suffix pieces."""
    characters = sorted({c for word in WORDS for c in word} | set("0123456789-,.&()|'"))
    vocab_list = [*SPECIAL_TOKENS, *characters, *(f"##{c}" for c in characters), *WORDS]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tokenizer


def write_tiny_checkpoint(path: Path, seed: int = 0, max_positions: int = 64) -> Path:
    """Write config.json, model.safetensors, tokenizer.json and vocab.txt into `path`."""
    import torch
    from transformers import BertConfig, BertModel

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.save(str(path / "tokenizer.json"))
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda pair: pair[1])
    (path / "vocab.txt").write_text("".join(f"{token}\n" for token, _ in vocab), encoding="utf-8")
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    torch.manual_seed(seed)
    model = BertModel(config)  # type: ignore[no-untyped-call]
    model.eval().save_pretrained(str(path))  # type: ignore[no-untyped-call]
    return path
