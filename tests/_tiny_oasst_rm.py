"""A tiny random OpenAssistant-style ``gpt_neox_reward_model`` with its own tokenizer (fully offline).

``build_tiny_oasst_rm(path, pooling)`` writes, like the released ``oasst-rm-2-pythia-6.9b-epoch-1``:

* ``config.json`` with ``model_type: gpt_neox_reward_model``, ``architectures: [GPTNeoXRewardModel]``,
  the legacy rotary keys (``rotary_pct``, ``rotary_emb_base``), ``torch_dtype: float16`` and no
  ``id2label``;
* half-precision weights named ``gpt_neox.*`` and ``out_proj.*`` (so a loader that followed the
  checkpoint's dtype would not give float32);
* a byte-level BPE tokenizer trained in memory, with ``<|prompter|>``, ``<|assistant|>``,
  ``<|endoftext|>`` (eos) and ``<|padding|>`` (pad) as special tokens.

The reward head is re-drawn with unit-variance weights so rewards are O(1), not ~0.
"""

from __future__ import annotations

import json
from pathlib import Path

PROMPTER, ASSISTANT, EOS, PAD = "<|prompter|>", "<|assistant|>", "<|endoftext|>", "<|padding|>"
_CORPUS = [
    "Hi there! Hello, how can I help you today?",
    "Tell me a joke. Why did the chicken cross the road? To get to the other side.",
    "What is the capital of France? The capital of France is Paris.",
    "I can't help with that, but here is something safer you could try instead.",
]


def build_tokenizer():
    """A ``PreTrainedTokenizerFast`` over a small byte-level BPE (any text encodes; no hub access)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[EOS, PAD, PROMPTER, ASSISTANT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(_CORPUS * 8, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=EOS, eos_token=EOS, pad_token=PAD,
                                   extra_special_tokens=[PROMPTER, ASSISTANT])


def build_tiny_oasst_rm(path: Path | str, pooling: str = "last", seed: int = 0) -> Path:
    """Save a random 2-layer ``gpt_neox_reward_model`` (hidden 32, 4 heads) and its tokenizer at ``path``."""
    import torch

    from icdpo_eval.judges.oasst_rm import GPTNeoXRewardModel, GPTNeoXRewardModelConfig

    path = Path(path)
    tok = build_tokenizer()
    cfg = GPTNeoXRewardModelConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=2048, rotary_pct=0.25, rotary_emb_base=10000, pooling=pooling,
        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = GPTNeoXRewardModel(cfg)
    with torch.no_grad():
        model.out_proj.weight.normal_(0.0, 1.0)
        model.out_proj.bias.fill_(0.5)
    model.half().save_pretrained(path)
    tok.save_pretrained(path)

    # rewrite config.json in the layout of the released (transformers 4.2x) checkpoint
    conf_file = path / "config.json"
    conf = json.loads(conf_file.read_text())
    rope = conf.pop("rope_parameters")
    for key in ("id2label", "label2id", "dtype"):
        conf.pop(key, None)
    conf.update(rotary_pct=rope["partial_rotary_factor"], rotary_emb_base=rope["rope_theta"], torch_dtype="float16",
                architectures=["GPTNeoXRewardModel"], model_type="gpt_neox_reward_model", pooling=pooling)
    conf_file.write_text(json.dumps(conf, indent=2, sort_keys=True))
    return path
