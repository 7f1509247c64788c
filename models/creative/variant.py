"""An ad-copy variant: what the creative agent proposes and moderation judges."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Variant:
    headline: str
    body: str
    channel: str  # search, social, display, video, email (tv has no generated copy)
    rationale: str = ""
    # Provenance, filled by generation: what the variant was grounded on and how it was made.
    campaign_id: str | None = None
    prompt_version: str | None = None
    model: str | None = None
    seed: int | None = None
    retrieved_passage_ids: tuple[str, ...] = field(default_factory=tuple)

    @property
    def text(self) -> str:
        """Headline and body as one string, for embedding and classifiers."""
        return f"{self.headline}\n{self.body}"
