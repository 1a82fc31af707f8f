"""OrpoConfig: transformers' TrainingArguments plus ORPO's fields.

Field names and defaults are TRL 1.16's ORPOConfig's (and its base config's: learning rate 1e-6,
logging every 10 steps, gradient checkpointing on), so recipes written for TRL read unchanged.
One default differs: bf16 left unset is on where a GPU supports it and off elsewhere (TRL's rule,
on unless fp16, fails on a CPU). `max_prompt_length` is a real field again (TRL 0.x's), and the
fields of orpo-dist's fast step (`orpo_*`, `completion_only_nll`) sit beside them. No torch at
import beyond what TrainingArguments brings: the launchers read recipes through this class too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from ..errors import UserError
from ..hardware import default_bf16
from ..model_rules import (
    CHECKPOINT_POLICIES, DEFAULT_CHECKPOINT_POLICY, DEFAULT_CHUNK_SIZE, DEFAULT_LOGITS_BUDGET_MB, DEFAULT_MAX_LENGTH,
)

# orpo_step: the fast step wherever it is exact for the model (auto), always (fast), or the padded
# forward of TRL's algorithm (stock). orpo/select.py decides.
STEPS = ("auto", "fast", "stock")


@dataclass
class OrpoConfig(TrainingArguments):
    _VALID_DICT_FIELDS = [*TrainingArguments._VALID_DICT_FIELDS, "model_init_kwargs"]

    # TrainingArguments fields whose default TRL's trainers change.
    learning_rate: float = field(default=1e-6, metadata={"help": "The initial learning rate for AdamW."})
    logging_steps: float = field(
        default=10,
        metadata={"help": "Log every X update steps (an integer, or a ratio of the training steps below 1)."},
    )
    gradient_checkpointing: bool = field(
        default=True, metadata={"help": "Recompute whole layers in the backward pass: less memory, about 20%% slower."}
    )
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 mixed precision. Unset: on where the GPU supports it and fp16 is not set, else off "
                  "(TRL turns it on everywhere, which fails on a CPU)."},
    )

    # ORPO (Hong et al. 2024).
    beta: float = field(
        default=0.1,
        metadata={"help": "Weight of the odds-ratio term against the NLL term (the paper's lambda)."},
    )
    max_length: int | None = field(
        default=DEFAULT_MAX_LENGTH, metadata={"help": "Tokens per sequence, prompt + answer."}
    )
    max_prompt_length: int | None = field(
        default=None,
        metadata={
            "help": "TRL 0.x's field: when prompt + longer answer exceed max_length, keep the prompt's last "
            "max_prompt_length tokens (the turns nearest the answer) and train the row. Unset: a row whose "
            "prompt alone fills max_length cannot train and is refused."
        },
    )
    max_completion_length: int | None = field(
        default=None, metadata={"help": "Answer tokens kept at most (each answer is cut to it)."}
    )
    disable_dropout: bool = field(default=True, metadata={"help": "Switch the model's dropout off."})
    padding_value: int | None = field(
        default=None, metadata={"help": "Token id that pads input_ids. Unset: the tokenizer's pad token."}
    )
    completion_only_nll: bool = field(
        default=False,
        metadata={"help": "NLL term over the chosen answer only (TRL's step: prompt and answer)."},
    )
    generate_during_eval: bool = field(
        default=False,
        metadata={"help": "TRL's W&B sample tables during evaluation: not supported (use `orpo-dist eval`)."},
    )
    is_encoder_decoder: bool | None = field(
        default=None, metadata={"help": "TRL's field; orpo-dist trains decoder-only models (true is refused)."}
    )
    model_init_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Keyword arguments of AutoModelForCausalLM.from_pretrained when the trainer gets a "
                  "model name instead of a model."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow models and tokenizers that ship their own Python code (it runs on load)."},
    )
    dataset_num_proc: int | None = field(
        default=None, metadata={"help": "Processes that tokenize the dataset."}
    )

    # orpo-dist's fast step.
    orpo_step: str = field(
        default="auto",
        metadata={
            "help": "ORPO step: auto (the fast step wherever it is exact for the model, else the stock one, "
            "with a notice), fast (refuse models it cannot run) or stock (the padded forward, TRL's algorithm).",
            "choices": list(STEPS),
        },
    )
    orpo_chunk_size: int = field(
        default=DEFAULT_CHUNK_SIZE,
        metadata={"help": "Fast step: positions per chunk of the vocabulary projection (memory: chunk x vocab floats)."},
    )
    orpo_activation_checkpointing: str = field(
        default=DEFAULT_CHECKPOINT_POLICY,
        metadata={
            "help": "Fast step: what of each layer is recomputed in the backward instead of kept: norms, mlp-act "
            "(the MLP's activation), mlp (the whole MLP: two matrix products more per position), combined with +, "
            "or none. gradient_checkpointing (whole layers) takes precedence.",
            "choices": list(CHECKPOINT_POLICIES),
        },
    )
    orpo_logits_budget_mb: int = field(
        default=DEFAULT_LOGITS_BUDGET_MB,
        metadata={"help": "Fast step: MiB of fp32 head logits a micro-batch may keep for the backward (one matrix "
                  "product less per target); above it they are recomputed chunk by chunk. 0: always recompute."},
    )

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = default_bf16(self.fp16, self.use_cpu)
        if self.generate_during_eval:
            raise UserError("generate_during_eval (TRL's W&B sample table) is not supported by orpo-dist: leave it "
                             "false and score probes with `orpo-dist eval RUN --prompts FILE` after training")
        if self.is_encoder_decoder:
            raise UserError(ENCODER_DECODER_REFUSAL)
        super().__post_init__()


ENCODER_DECODER_REFUSAL = (
    "orpo-dist's ORPO trainer trains decoder-only (causal LM) models; encoder-decoder models (T5, BART) are not "
    "supported: use a causal LM, or TRL's trl.experimental.orpo.ORPOTrainer for an encoder-decoder model")
