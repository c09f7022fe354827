"""More tiny randomly initialised vision-language models, one per family, built from configs (test doubles; no
download). Each ``build_tiny_<family>(folder)`` writes a model + processor + chat template with ``save_pretrained``,
so ``AutoProcessor`` + ``AutoModelForImageTextToText`` load it like a hub model and the real transformers backend
runs end to end. Every image processor is the family's PIL one (``*ImageProcessorPil``): torchvision cannot be
installed beside the pinned CPU torch here (README, "Model families").

Sizes: hidden size 32, 2 layers, 32-64 px images; each folder is well under 1 MB and builds in about a second.
The tokenizer is the byte-level BPE of :mod:`tests.doubles.tiny_llava`, trained in memory, plus the family's own
special tokens.

``FAMILIES`` maps a family name to its builder, or to the reason it cannot be built here (a string).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from doubles import tiny_llava

#: a generic ChatML template with one placeholder per image; ``{image}`` is the family's image placeholder text
_CHATML = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}IMAGE_PLACEHOLDER"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def chat_template(image_placeholder: str) -> str:
    return _CHATML.replace("IMAGE_PLACEHOLDER", image_placeholder)


def _tokenizer(extra: list[str], **named: str):
    """The tiny BPE tokenizer with ``extra`` special tokens (``named``: e.g. ``image_token="<image>"``)."""
    return tiny_llava._tokenizer(tuple(extra), named or None)


def _scale_head(model, factor: float = 40.0) -> None:
    """Random weights give near-uniform logits; a scaled LM head makes the first-token distribution peaked."""
    import torch

    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(factor)


def _save(folder: Path, model, processor, tokenizer) -> Path:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _clip_vision(image_size: int = 32, patch: int = 8):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch,
        projection_dim=32,
    )


# --- LLaVA-NeXT -------------------------------------------------------------------------------------------------


def build_tiny_llava_next(folder: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    folder = Path(folder)
    tok = _tokenizer(["<image>"])
    size, patch = 32, 8
    pinpoints = [[32, 32], [32, 64], [64, 32]]
    config = LlavaNextConfig(
        vision_config=_clip_vision(size, patch),
        text_config=tiny_llava._text_config(tok),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config).eval()
    _scale_head(model)
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}, image_grid_pinpoints=pinpoints
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=chat_template("<image>\n"),
    )
    return _save(folder, model, processor, tok)


# --- Idefics3 ---------------------------------------------------------------------------------------------------


def build_tiny_idefics3(folder: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor, Idefics3VisionConfig
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    folder = Path(folder)
    tok = _tokenizer(["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"])
    size, patch, scale = 32, 8, 2
    vision = Idefics3VisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=size,
        patch_size=patch,
    )
    config = Idefics3Config(
        vision_config=vision,
        text_config=tiny_llava._text_config(tok),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=scale,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).eval()
    _scale_head(model)
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 2 * size}, max_image_size={"longest_edge": size}, do_image_splitting=True
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tok,
        image_seq_len=(size // patch) ** 2 // (scale**2),
        chat_template=chat_template("<image>"),
    )
    return _save(folder, model, processor, tok)


# --- Qwen2-VL / Qwen2.5-VL --------------------------------------------------------------------------------------


def _build_qwen(folder: str | Path, seed: int, v25: bool) -> Path:
    import torch

    if v25:
        from transformers import Qwen2_5_VLConfig as Config
        from transformers import Qwen2_5_VLForConditionalGeneration as Model
        from transformers import Qwen2_5_VLProcessor as Processor
    else:
        from transformers import Qwen2VLConfig as Config
        from transformers import Qwen2VLForConditionalGeneration as Model
        from transformers import Qwen2VLProcessor as Processor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    folder = Path(folder)
    specials = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = _tokenizer(specials)
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    text = {
        "vocab_size": len(tok),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]},
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    vision: dict = {"depth": 2, "num_heads": 4, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}
    if v25:
        vision.update(
            hidden_size=32, intermediate_size=64, out_hidden_size=32, fullatt_block_indexes=[1], window_size=56
        )
    else:
        vision.update(embed_dim=32, hidden_size=32, mlp_ratio=2)
    config = Config(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Model(config).eval()
    _scale_head(model)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=56 * 112, patch_size=14, merge_size=2)
    processor = Processor(
        image_processor=image_processor,
        tokenizer=tok,
        video_processor=None,
        chat_template=chat_template("<|vision_start|><|image_pad|><|vision_end|>"),
    )
    return _save(folder, model, processor, tok)


def build_tiny_qwen2_vl(folder: str | Path, seed: int = 0) -> Path:
    return _build_qwen(folder, seed, v25=False)


def build_tiny_qwen2_5_vl(folder: str | Path, seed: int = 0) -> Path:
    return _build_qwen(folder, seed, v25=True)


# --- Gemma 3 ----------------------------------------------------------------------------------------------------


def build_tiny_gemma3(folder: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor, SiglipVisionConfig
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    folder = Path(folder)
    boi, eoi, soft = "<start_of_image>", "<end_of_image>", "<image_soft_token>"
    tok = _tokenizer([boi, eoi, soft], boi_token=boi, eoi_token=eoi, image_token=soft)
    size, patch = 32, 8
    text = {
        "vocab_size": len(tok),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "max_position_embeddings": 1024,
        "sliding_window": 64,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=size,
        patch_size=patch,
    )
    config = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=4,
        boi_token_index=tok.convert_tokens_to_ids(boi),
        eoi_token_index=tok.convert_tokens_to_ids(eoi),
        image_token_index=tok.convert_tokens_to_ids(soft),
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    _scale_head(model)
    image_processor = Gemma3ImageProcessorPil(size={"height": size, "width": size})
    processor = Gemma3Processor(
        image_processor=image_processor, tokenizer=tok, image_seq_length=4, chat_template=chat_template(boi)
    )
    return _save(folder, model, processor, tok)


FAMILIES: dict[str, Callable[..., Path] | str] = {
    "llava": tiny_llava.build_tiny_llava,
    "llava_next": build_tiny_llava_next,
    "idefics3": build_tiny_idefics3,
    "qwen2_vl": build_tiny_qwen2_vl,
    "qwen2_5_vl": build_tiny_qwen2_5_vl,
    "gemma3": build_tiny_gemma3,
}
