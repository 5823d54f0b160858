"""OpenAssistant's GPT-NeoX reward model (``model_type: gpt_neox_reward_model``) for transformers.

The paper's metric uses ``OpenAssistant/oasst-rm-2-pythia-6.9b-epoch-1``, whose ``config.json`` names
``model_type: gpt_neox_reward_model``, a type that transformers does not ship, so stock
``AutoModelForSequenceClassification`` cannot load it. The architecture is small:

* a GPT-NeoX trunk (:class:`~transformers.GPTNeoXModel`, weights ``gpt_neox.*``);
* a pooling of the final hidden states over the real (non-padded) tokens: ``"last"`` (the hidden
  state of the last real token, for either padding side) or ``"mean"`` (their average);
* one linear head ``out_proj`` (``hidden_size -> 1``, weights ``out_proj.weight`` / ``out_proj.bias``),
  whose output is the reward.

Checkpoint weights load by name into these modules; nothing is renamed. :func:`register` makes
``AutoConfig`` and ``AutoModelForSequenceClassification`` resolve the type to the classes below.

The architecture is that of OpenAssistant's ``model/model_training/models/reward_model.py``
(https://github.com/LAION-AI/Open-Assistant), which the ICDPO release (https://github.com/F2-Song/ICDPO,
``reward_model.py``, loaded by its ``metrics.py``) uses to compute the paper's reward scores. This is an
independent re-implementation against the transformers 5.x modelling API.
"""

from __future__ import annotations

from typing import Any

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutputWithPast
from transformers.models.gpt_neox.configuration_gpt_neox import GPTNeoXConfig
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXModel, GPTNeoXPreTrainedModel

MODEL_TYPE = "gpt_neox_reward_model"
POOLINGS = ("last", "mean")


@strict
class GPTNeoXRewardModelConfig(GPTNeoXConfig):
    """A :class:`GPTNeoXConfig` plus ``pooling`` (``"last"``, the default, or ``"mean"``).

    The head has exactly one output, so ``num_labels`` is always 1 (released configs carry no
    ``id2label``, which transformers would otherwise read as 2 labels).
    """

    model_type = MODEL_TYPE

    pooling: str | None = "last"

    def __post_init__(self, **kwargs: Any) -> None:
        if self.pooling is None:  # older configs may store null: OpenAssistant's default applies
            self.pooling = "last"
        kwargs.pop("num_labels", None)
        super().__post_init__(**kwargs)
        self.num_labels = 1

    def validate_architecture(self) -> None:
        super().validate_architecture()
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r} for {MODEL_TYPE}; expected one of {POOLINGS}")


def pool_hidden_states(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """Pool ``hidden`` ``[B, T, H]`` over the real tokens of ``attention_mask`` ``[B, T]`` into ``[B, H]``.

    ``"last"`` takes the position where the running count of real tokens first reaches its maximum,
    i.e. the last real token whether the batch is padded on the right or on the left. ``"mean"``
    averages the real tokens. Without a mask every position counts as real.
    """
    if pooling == "mean":
        if attention_mask is None:
            return hidden.mean(dim=1)
        mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
    if pooling == "last":
        if attention_mask is None:
            return hidden[:, -1]
        last = attention_mask.long().cumsum(dim=1).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)]
    raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")


class GPTNeoXRewardModel(GPTNeoXPreTrainedModel):
    """GPT-NeoX trunk, pooled over the real tokens, then a single linear reward head ``out_proj``.

    ``forward(...).logits`` has shape ``[batch, 1]``: the reward of each sequence.
    """

    config_class = GPTNeoXRewardModelConfig
    # buffers that pre-4.3x GPT-NeoX checkpoints stored with the weights; recomputed here
    _keys_to_ignore_on_load_unexpected = [r"attention\.bias", r"attention\.masked_bias", r"rotary_emb\.inv_freq"]

    def __init__(self, config: GPTNeoXConfig) -> None:
        if type(config) is GPTNeoXConfig:  # a plain GPT-NeoX config: default pooling, fresh head
            fields = {k: v for k, v in config.to_dict().items() if k != "model_type"}
            config = GPTNeoXRewardModelConfig.from_dict(fields)
        super().__init__(config)
        self.gpt_neox = GPTNeoXModel(config)
        self.out_proj = nn.Linear(config.hidden_size, 1)
        self.pooling: str = getattr(config, "pooling", None) or "last"
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.gpt_neox.embed_in

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.gpt_neox.embed_in = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = False,
        **kwargs: Any,
    ) -> SequenceClassifierOutputWithPast:
        out = self.gpt_neox(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        pooled = pool_hidden_states(out.last_hidden_state, attention_mask, self.pooling)
        return SequenceClassifierOutputWithPast(
            logits=self.out_proj(pooled),
            cache=getattr(out, "cache", None),
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )


def register() -> None:
    """Make ``AutoConfig`` / ``AutoModelForSequenceClassification`` load ``gpt_neox_reward_model``.

    Idempotent. If this transformers already maps the type (a future release shipping it), its own
    classes are left in place.
    """
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    if MODEL_TYPE not in CONFIG_MAPPING:
        AutoConfig.register(MODEL_TYPE, GPTNeoXRewardModelConfig)
    if CONFIG_MAPPING[MODEL_TYPE] is not GPTNeoXRewardModelConfig:
        return  # shipped by transformers: its config (and model, if any) win
    if GPTNeoXRewardModelConfig not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
        AutoModelForSequenceClassification.register(GPTNeoXRewardModelConfig, GPTNeoXRewardModel)
