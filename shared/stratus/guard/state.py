"""What the guard records on its way through one request: the verdicts so far, the policy in force, the
canary and the PII vault.

`GuardState` rides in the query workflow's state (QueryRequest.guard) from GuardInput to GuardOutput, so
each stage sees what the earlier ones decided without reading the policy again. `GuardSummary` is what
leaves the request (the response, the trace): the verdicts and the block, never the vault.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Stage = Literal["input", "context", "output"]
# What a rail did: pass (nothing found), flag (found, recorded only), redact (PII replaced),
# block (the request is refused), drop / fence (a retrieved chunk removed / quoted as untrusted data).
Action = Literal["pass", "flag", "redact", "block", "drop", "fence"]


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rail: str
    stage: Stage
    action: Action
    score: float = Field(ge=0, le=1)  # the rail's highest score in this stage
    threshold: float | None = None  # the score at which the rail counts a hit
    details: dict[str, Any] = {}  # e.g. PII entity types, chunk ids dropped, unsupported sentences

    @property
    def hit(self) -> bool:
        return self.action != "pass"


class GuardSummary(BaseModel):
    """The guard's record of one request: safe to return to the caller and to store in its trace."""

    model_config = ConfigDict(extra="forbid")

    verdicts: list[Verdict] = []
    blocked: Verdict | None = None

    def flagged(self) -> list[str]:
        return [v.rail for v in self.verdicts if v.hit]


class GuardState(GuardSummary):
    """The summary plus what later stages need. `vault` maps PII placeholders to the caller's values: it
    never reaches a provider, a trace or a log."""

    policy: dict[str, dict[str, Any]]  # the tenant's effective policy (GuardPolicy.rails, dumped)
    canary: str | None = None  # placed in the system prompt; its appearance in an answer is a leak
    vault: dict[str, str] = {}
    search_query: str | None = None  # the unredacted question: retrieval runs inside the stack

    def summary(self) -> GuardSummary:
        return GuardSummary(verdicts=self.verdicts, blocked=self.blocked)
