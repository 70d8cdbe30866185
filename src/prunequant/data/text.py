"""Offline English text: the docstrings of the Python standard library, split by document (source file).

Nothing is downloaded or imported: every ``.py`` file under the running interpreter's standard library
(``sysconfig.get_paths()["stdlib"]``; ``site-packages``, ``test``/``tests`` folders and ``idlelib/idle_test``
excluded) is parsed with :mod:`ast`, and the docstrings of the module, its classes and functions (in source
order) form one document. Documents are assigned to train/val/test by a hash of their relative path, so the
split is stable across runs and machines with the same Python version, and no file contributes to two splits.

Tokenization is byte-level (:class:`ByteTokenizer`, vocabulary 256, UTF-8 bytes): no vocabulary to train or
download, and perplexity is per byte.

Example:
    >>> from prunequant.data.text import stdlib_corpus
    >>> corpus = stdlib_corpus(max_docs=20)
    >>> corpus.train.dtype
    torch.uint8
"""
from __future__ import annotations

import ast
import hashlib
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..errors import ConfigError, StorageError

EXCLUDED_DIRS = ("site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__")
DOC_SEPARATOR = "\n\n\x1e\n\n"  # record separator between documents in a token stream


class ByteTokenizer:
    """UTF-8 byte tokenizer: ``encode(str) -> uint8 tensor``, ``decode(tensor) -> str`` (vocabulary 256)."""

    vocab_size = 256

    def encode(self, text: str) -> Tensor:
        data = text.encode("utf-8")
        if not data:
            return torch.zeros(0, dtype=torch.uint8)
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()

    def decode(self, ids: Tensor) -> str:
        return bytes(ids.to(torch.uint8).tolist()).decode("utf-8", errors="replace")


def _docstrings(source: str) -> list[str]:
    tree = ast.parse(source)
    out = []
    nodes = [tree] + [n for n in ast.walk(tree)
                      if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    nodes.sort(key=lambda n: getattr(n, "lineno", 0))
    for node in nodes:
        doc = ast.get_docstring(node, clean=True)
        if doc:
            out.append(doc)
    return out


def stdlib_documents(stdlib_dir: str | Path | None = None, min_chars: int = 200,
                     max_docs: int | None = None) -> list[tuple[str, str]]:
    """``[(relative path, text)]`` sorted by path: the docstrings of each standard-library source file.

    Args:
        stdlib_dir: folder to walk (default: this interpreter's standard library).
        min_chars: drop files whose docstrings total fewer characters.
        max_docs: keep only the first ``max_docs`` documents (by path), for tests.
    """
    root = Path(stdlib_dir) if stdlib_dir is not None else Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise StorageError(f"standard-library folder not found: {root}")
    docs = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in EXCLUDED_DIRS for part in rel.parts[:-1]):
            continue
        try:
            text = "\n\n".join(_docstrings(path.read_text(encoding="utf-8")))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue  # a few stdlib files are templates or not UTF-8: skip them
        if len(text) >= min_chars:
            docs.append((rel.as_posix(), text))
            if max_docs is not None and len(docs) >= max_docs:
                break
    if not docs:
        raise StorageError(f"no documents with >= {min_chars} characters of docstrings under {root}")
    return docs


def split_of(name: str, fractions: tuple[float, float, float] = (0.9, 0.05, 0.05), salt: str = "") -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a document name, from a SHA-1 hash (stable, seed-free)."""
    h = int.from_bytes(hashlib.sha1((salt + name).encode()).digest()[:8], "big") / 2 ** 64
    if h < fractions[0]:
        return "train"
    return "val" if h < fractions[0] + fractions[1] else "test"


@dataclass
class TextCorpus:
    """Token streams (uint8 bytes) per split, and the document names of each split."""

    train: Tensor
    val: Tensor
    test: Tensor
    documents: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""

    def summary(self) -> dict:
        return {"source": self.source,
                **{f"{s}_docs": len(self.documents.get(s, [])) for s in ("train", "val", "test")},
                **{f"{s}_bytes": int(getattr(self, s).numel()) for s in ("train", "val", "test")}}


def stdlib_corpus(stdlib_dir: str | Path | None = None, fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
                  min_chars: int = 200, max_docs: int | None = None, salt: str = "") -> TextCorpus:
    """Byte-token streams of the standard-library docstrings, split by document (see module docstring).

    Args:
        stdlib_dir, min_chars, max_docs: as in :func:`stdlib_documents`.
        fractions: train/val/test shares of documents (by hash; sums to 1).
        salt: changes the hash, i.e. draws another split.
    Returns:
        :class:`TextCorpus`; documents in a split are joined with a separator line.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"fractions must be three non-negative shares summing to 1, got {fractions}")
    tok = ByteTokenizer()
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    names: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for name, text in stdlib_documents(stdlib_dir, min_chars, max_docs):
        s = split_of(name, fractions, salt)
        parts[s].append(text)
        names[s].append(name)
    streams = {s: tok.encode(DOC_SEPARATOR.join(parts[s])) for s in parts}
    root = stdlib_dir if stdlib_dir is not None else sysconfig.get_paths()["stdlib"]
    return TextCorpus(streams["train"], streams["val"], streams["test"], names, f"stdlib docstrings ({root})")


__all__ = ["ByteTokenizer", "TextCorpus", "split_of", "stdlib_corpus", "stdlib_documents"]
