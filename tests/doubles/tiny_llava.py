"""Tiny randomly initialised models built from configs, saved with ``save_pretrained`` (test doubles; no download).

``build_tiny_llava(folder)`` writes a LLaVA-style model (tiny CLIP vision tower + tiny Llama text model), a
byte-level BPE tokenizer trained in memory on a few sentences, a ``CLIPImageProcessor``, a ``LlavaProcessor`` and a
ChatML-style chat template with image placeholders. ``AutoProcessor`` + ``AutoModelForImageTextToText`` load it
like any hub model, so the real transformers backend code path runs end to end.

``build_tiny_text_lm(folder)`` writes a text-only Llama causal LM (no vision tower) for error tests.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", IMAGE_TOKEN, "<|im_start|>", "<|im_end|>"]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "Yes, I would buy both products together because they are both used for camping.",
    "No, the products serve different needs. yes no YES NO Yes No",
    "The potential co-buy intention could be they are both used for hiking and outdoor activities.",
    "Product A: a red tent. Product B: a camping stove. A customer bought product A and product B together.",
    "Imagine you are a consumer who is eager to buy product A or product B. Be critical.",
    "The image shows product A at the top and product B at the bottom. Describe the product.",
    "You are a careful assistant that helps understand why online shoppers buy products together.",
]


def _tokenizer(extra_special: tuple[str, ...] = (), named: dict[str, str] | None = None):
    """The tiny BPE tokenizer; ``extra_special`` adds special tokens, ``named`` names some of them
    (``{"image_token": "<image>"}``: ``tokenizer.image_token``, as multimodal processors expect)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS + [t for t in extra_special if t not in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 3, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=[IMAGE_TOKEN, "<|im_start|>", "<|im_end|>"]
        + [t for t in extra_special if t not in SPECIAL_TOKENS],
        **({"extra_special_tokens": named} if named else {}),
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _text_config(tokenizer, **kw):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **kw,
    )


def build_tiny_llava(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random LLaVA model + processor into ``folder`` and return it."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        GenerationConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    image_size, patch = 32, 8
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch,
        projection_dim=32,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=_text_config(tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    # random weights have tiny logits; scale the LM head so the first-token distribution is far from uniform
    with torch.no_grad():
        head = model.get_output_embeddings()
        head.weight.mul_(40.0)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_text_lm(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random text-only Llama causal LM (with tokenizer) into ``folder``."""
    import torch
    from transformers import LlamaForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    torch.manual_seed(seed)
    LlamaForCausalLM(_text_config(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    import sys

    print(build_tiny_llava(sys.argv[1] if len(sys.argv) > 1 else "tiny_llava"))
