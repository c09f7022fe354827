"""Write the sample's shipped embeddings: every text ``build-kb`` encodes for this folder (the intentions and the
pair texts of the grounding score), encoded by the default model with each ONNX backend.

    python data/mind_sample/make_embedding_seed.py

Output: ``embedding_seed/all-MiniLM-L6-v2.<backend>.keys.npy`` (SHA-1 of each text, N x 20 uint8) and
``….f16.npy`` (N x 384 float16), read by ``build-kb`` to fill the embedding cache before encoding anything. Run it
again after the sample, the model or the encoder changes, and update the checksums in README.md.
"""

import sys
from pathlib import Path

from mind_core.data.kb_files import load_inputs
from mind_core.io import sha256_file
from mind_core.kb.build import write_seed
from mind_core.kb.embed import get_embedder
from mind_core.scores.build import pair_text

HERE = Path(__file__).resolve().parent


def texts_of(folder: Path) -> list[str]:
    loaded = load_inputs([folder])
    texts = [r["intention"] for r in loaded.intentions]
    for r in loaded.intentions:
        a, b = loaded.products.get(r["asin_a"]), loaded.products.get(r["asin_b"])
        if a is not None and b is not None:
            texts.append(pair_text(a.get("title"), a.get("description"), b.get("title"), b.get("description")))
    return list(dict.fromkeys(texts))


def main(backends: list[str]) -> None:
    texts = texts_of(HERE)
    for backend in backends:
        enc = get_embedder(None, backend)
        enc.encode_cached(texts, progress=True)
        for path in write_seed(HERE, texts, enc):
            print(f"{path.relative_to(HERE)}  {path.stat().st_size:,} bytes  sha256 {sha256_file(path)}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["onnx"])
