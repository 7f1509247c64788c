"""Split brand documents (markdown with `##` sections) into small, stably identified chunks for
retrieval-grounded generation."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

_MIN_MAX_CHARS = 120
_FENCE = re.compile(r"^\s*(```|~~~)")
_TITLE = re.compile(r"^#\s+(.+?)\s*#*\s*$")
_SECTION = re.compile(r"^##\s+(.+?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Chunk:
    chunk_id: str  # {doc_id}#{section slug}-{n}: depends on headings and order, not on wording
    doc_id: str
    heading_path: tuple[str, ...]  # (title, section) where the document has them
    text: str  # heading path as markdown, then the passage: every chunk reads on its own
    sha256: str  # of `text`; changes whenever the wording does

    @property
    def passage_id(self) -> str:
        """Chunks are the passages a retriever returns."""
        return self.chunk_id


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "section"


def _sections(text: str) -> tuple[str | None, list[tuple[str | None, list[str]]]]:
    """The document title and its sections as (heading or None for the preamble, lines)."""
    title: str | None = None
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        if not in_fence:
            preamble_empty = len(sections) == 1 and not any(x.strip() for x in sections[0][1])
            if title is None and preamble_empty:
                m = _TITLE.match(line)
                if m:
                    title = m.group(1)
                    continue
            m = _SECTION.match(line)
            if m:
                sections.append((m.group(1), []))
                continue
        sections[-1][1].append(line)
    return title, sections


def _paragraphs(lines: list[str]) -> list[str]:
    paras, current = [], []
    for line in lines:
        if line.strip():
            current.append(line.rstrip())
        elif current:
            paras.append("\n".join(current))
            current = []
    if current:
        paras.append("\n".join(current))
    return paras


def _split_long(paragraph: str, limit: int) -> list[str]:
    """A paragraph longer than `limit` split on sentence ends, and hard-split only when a single
    sentence is itself too long."""
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        while len(sentence) > limit:
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            pieces.append(sentence[:cut].rstrip())
            sentence = sentence[cut:].lstrip()
        if sentence:
            pieces.append(sentence)
    return _pack(pieces, limit, sep=" ")


def _pack(pieces: list[str], limit: int, sep: str) -> list[str]:
    out: list[str] = []
    for piece in pieces:
        if out and len(out[-1]) + len(sep) + len(piece) <= limit:
            out[-1] = out[-1] + sep + piece
        else:
            out.append(piece)
    return out


def _clip(line: str, limit: int) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def chunk_markdown(doc_id: str, text: str, max_chars: int = 800) -> list[Chunk]:
    """Chunks of at most `max_chars` characters, one or more per `##` section; each starts with its
    heading path (`# title`, `## section`) so a passage keeps its context when read alone."""
    if not doc_id or "#" in doc_id:
        raise ValueError(f"doc_id must be non-empty and contain no '#': {doc_id!r}")
    if max_chars < _MIN_MAX_CHARS:
        raise ValueError(f"max_chars must be at least {_MIN_MAX_CHARS}, got {max_chars}")
    title, sections = _sections(text)
    chunks: list[Chunk] = []
    used_slugs: set[str] = set()
    for heading, lines in sections:
        paras = _paragraphs(lines)
        if not paras:
            continue
        slug = slugify(heading) if heading is not None else "intro"
        base, k = slug, 2
        while slug in used_slugs:  # two sections with one heading still get distinct ids
            slug, k = f"{base}-{k}", k + 1
        used_slugs.add(slug)
        path = tuple(h for h in (title, heading) if h is not None)
        # The header may take at most half the budget, so a passage always has room.
        header_lines = []
        if title is not None:
            header_lines.append(_clip(f"# {title}", max_chars // 4))
        if heading is not None:
            header_lines.append(_clip(f"## {heading}", max_chars // 4))
        header = "\n".join(header_lines) + "\n\n" if header_lines else ""
        room = max_chars - len(header)
        pieces: list[str] = []
        for para in paras:
            pieces.extend(_split_long(para, room) if len(para) > room else [para])
        for n, body in enumerate(_pack(pieces, room, sep="\n\n"), start=1):
            chunk_text = header + body
            chunks.append(
                Chunk(
                    chunk_id=f"{doc_id}#{slug}-{n}",
                    doc_id=doc_id,
                    heading_path=path,
                    text=chunk_text,
                    sha256=hashlib.sha256(chunk_text.encode("utf-8")).hexdigest(),
                )
            )
    return chunks


def load_brand_documents(folder: str | Path, max_chars: int = 800) -> list[Chunk]:
    """Chunks of every `*.md` file in `folder`, files in name order; the file stem is the doc id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"brand document folder not found: {folder}")
    paths = sorted(folder.glob("*.md"))
    if not paths:
        # Generating with nothing to ground on would be worse than failing here.
        raise ValueError(f"no brand documents (*.md) in {folder}")
    chunks: list[Chunk] = []
    for path in paths:
        chunks.extend(chunk_markdown(path.stem, path.read_text(encoding="utf-8"), max_chars))
    return chunks
