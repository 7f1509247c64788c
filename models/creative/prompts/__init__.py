"""Versioned prompt files (`<name>/v<N>.md`, a system and a user part) and their loader; the
version string carries the file's hash, so an edited prompt never passes for the old one."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent
SYSTEM_MARKER = "=== system ==="
USER_MARKER = "=== user ==="
_VERSION_FILE = re.compile(r"^v(\d+)\.md$")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


class PromptError(ValueError):
    pass


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str  # "v1", from the file name
    system: str
    user_template: str  # with {{placeholder}} fields
    sha256: str  # of the file's bytes

    @property
    def prompt_version(self) -> str:
        """E.g. `creative_variants@v1+1a2b3c4d`: recorded with every call and every variant."""
        return f"{self.name}@{self.version}+{self.sha256[:8]}"

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(_PLACEHOLDER.findall(self.user_template))

    def render_user(self, **values: object) -> str:
        """The user message; every placeholder must be given and nothing else, so a renamed
        field fails loudly instead of leaving `{{...}}` in front of the model."""
        missing = self.placeholders - values.keys()
        extra = values.keys() - self.placeholders
        if missing or extra:
            raise PromptError(
                f"prompt {self.prompt_version}: missing values {sorted(missing)}, "
                f"unexpected values {sorted(extra)}"
            )
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), self.user_template)


def available_versions(name: str, root: str | Path = PROMPTS_DIR) -> list[str]:
    """Versions of prompt `name`, lowest first (`v2` before `v10`)."""
    folder = Path(root) / name
    if not folder.is_dir():
        raise PromptError(f"no prompt named {name!r} under {root}")
    numbers = sorted(
        int(m.group(1)) for p in folder.iterdir() if (m := _VERSION_FILE.match(p.name))
    )
    return [f"v{n}" for n in numbers]


def parse_prompt(name: str, version: str, raw: bytes) -> Prompt:
    text = raw.decode("utf-8")
    if text.count(SYSTEM_MARKER) != 1 or text.count(USER_MARKER) != 1:
        raise PromptError(
            f"prompt {name}@{version} needs exactly one {SYSTEM_MARKER!r} and one {USER_MARKER!r}"
        )
    before, rest = text.split(SYSTEM_MARKER)
    system, user = rest.split(USER_MARKER) if USER_MARKER in rest else ("", "")
    if before.strip() or not system.strip() or not user.strip():
        raise PromptError(
            f"prompt {name}@{version}: the system part must come first and neither may be empty"
        )
    return Prompt(
        name=name,
        version=version,
        system=system.strip(),
        user_template=user.strip(),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def load_prompt(name: str, version: str | None = None, root: str | Path = PROMPTS_DIR) -> Prompt:
    """Prompt `name` at `version` (e.g. "v1"), or at its highest version when none is given."""
    versions = available_versions(name, root)
    if not versions:
        raise PromptError(f"prompt {name!r} has no v<N>.md files under {root}")
    chosen = versions[-1] if version is None else version
    if chosen not in versions:
        raise PromptError(f"prompt {name!r} has no version {chosen!r}; available: {versions}")
    path = Path(root) / name / f"{chosen}.md"
    return parse_prompt(name, chosen, path.read_bytes())
