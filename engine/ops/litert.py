"""Bundled TensorFlow Lite models, run with LiteRT (``ai-edge-litert``), one thread each.

A model is loaded once per process into the per-process cache (``ctx.warm``) under the
key ``("litert", name)``; ``warm_up`` in ``engine.ops`` loads them all at process start so
that no task pays the load. The files live in ``models/`` (package data, with their
licence and checksums in ``models/README.md``); nothing is downloaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InternalError

MODELS_DIR = Path(__file__).with_name("models")
INFERENCE_THREADS = 1  # one pool process per core: more threads would only compete

# name -> file in models/
MODEL_FILES = {
    "face_short": "face_detection_short_range.tflite",
    "face_full": "face_detection_full_range_sparse.tflite",
    "selfie_square": "selfie_segmentation.tflite",
    "selfie_landscape": "selfie_segmentation_landscape.tflite",
}


@dataclass
class Model:
    """One loaded interpreter: its input size and output tensors in a fixed order."""

    name: str
    interpreter: Any
    input_index: int
    input_hw: tuple[int, int]
    output_indices: tuple[int, ...]

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Outputs (first batch item) for one float32 NHWC ``tensor``."""
        it = self.interpreter
        it.set_tensor(self.input_index, np.ascontiguousarray(tensor, dtype=np.float32))
        it.invoke()
        return [it.get_tensor(i)[0] for i in self.output_indices]


def load(name: str) -> Model:
    """Load model ``name`` (a key of MODEL_FILES) with one inference thread, and run it
    once on zeros: the first invoke prepares the XNNPACK kernels (tens of ms), so a warm
    model's first real task runs at full speed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # a broken install: the package is a declared dependency
        raise InternalError("the learned operations need the 'ai-edge-litert' package; "
                            "install it with: pip install ai-edge-litert") from exc
    path = MODELS_DIR / MODEL_FILES[name]
    if not path.is_file():
        raise InternalError(f"model file {path} is missing from this install; reinstall the engine package")
    it = Interpreter(model_path=str(path), num_threads=INFERENCE_THREADS)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    # Outputs in a stable order: the widest last axis first (BlazeFace: regressors, then scores).
    outs = sorted(it.get_output_details(), key=lambda d: -int(d["shape"][-1]))
    loaded = Model(name=name, interpreter=it, input_index=int(inp["index"]),
                   input_hw=(int(inp["shape"][1]), int(inp["shape"][2])),
                   output_indices=tuple(int(d["index"]) for d in outs))
    loaded.run(np.zeros(tuple(int(n) for n in inp["shape"]), np.float32))  # the first invoke sets XNNPACK up
    return loaded


def model(ctx, name: str) -> Model:
    """Model ``name``, loaded once per process and kept in the per-process cache."""
    return ctx.warm(cache_key(name), lambda: load(name), keep=len(MODEL_FILES))


def cache_key(name: str) -> tuple:
    return ("litert", name)
