"""The LLM judge of online evaluation: the `judge-rubric` prompt from the registry, run on the configured
alias through the router, its JSON verdict validated.

A verdict that is not valid JSON with integer scores 1-5, or a provider failure, is a judge failure: it
is recorded with its reason and never scored as zero (a broken judge must not look like bad answers).

With the offline provider (local mode and CI) no model can grade, so the offline judge stands in: the
same rubric's two criteria computed without a model (faithfulness from the groundedness scorer,
relevance from the extractive question-to-answer score), mapped onto the same 1-5 scale and recorded
under its own scorer name, `judge-offline`, so its figures are never mistaken for a model's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

JUDGE_PROMPT = "judge-rubric"
CRITERIA = ("faithfulness", "relevance")
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class Verdict(BaseModel):
    model_config = ConfigDict(extra="ignore")

    faithfulness: int = Field(ge=1, le=5)
    relevance: int = Field(ge=1, le=5)
    reason: str = ""


@dataclass
class Judgement:
    scorer: str  # "judge-rubric@<version>" or "judge-offline"
    scores: dict[str, float] = field(default_factory=dict)  # criterion -> 0..1
    reason: str = ""
    error: str | None = None  # set: the judge failed, no score
    cost_usd: float = 0.0


def parse_verdict(text: str) -> Verdict:
    """The first JSON object in the judge's reply, validated; ValueError says what was wrong."""
    match = _JSON_OBJECT.search(text or "")
    if match is None:
        raise ValueError("the judge's reply holds no JSON object")
    try:
        return Verdict.model_validate(json.loads(match.group(0)))
    except json.JSONDecodeError as err:
        raise ValueError(f"the judge's reply is not valid JSON: {err.msg}") from None
    except ValidationError as err:
        first = err.errors()[0]
        raise ValueError(f"the judge's verdict is invalid at {'.'.join(map(str, first['loc']))}: {first['msg']}") \
            from None


def to_unit(score: int) -> float:
    return (score - 1) / 4


@dataclass
class Judge:
    """The judge for one tenant's samples. The rubric is resolved once, from the database; grading then
    needs no database, so hosted calls (bound by the provider's latency) can run side by side."""

    settings: Any
    router: Any
    prompt: Any = None  # the resolved judge-rubric version; None: the offline judge

    @property
    def hosted(self) -> bool:
        return self.prompt is not None

    def grade(self, question: str, answer: str, passages: list[Any]) -> Judgement:
        """Grade one sample. `passages` are ContextPassages (number, text)."""
        if self.prompt is None:
            return offline_judge(question, answer, passages)
        from stratus.llm.errors import ProviderError
        from stratus.llm.types import ChatRequest

        scorer = f"{JUDGE_PROMPT}@{self.prompt.version}"
        variables = {"question": question, "answer": answer,
                     "passages": [{"number": p.number, "text": p.text} for p in passages]}
        request = ChatRequest(messages=self.prompt.render(variables, []), **(self.prompt.parameters or {}))
        try:
            routed = self.router.complete(self.settings.eval_judge_model, request)
        except ProviderError as err:
            return Judgement(scorer, error=f"judge call failed: {err.code}")
        try:
            verdict = parse_verdict(routed.completion.text)
        except ValueError as err:
            return Judgement(scorer, error=str(err), cost_usd=routed.cost_usd)
        return Judgement(scorer, {c: to_unit(getattr(verdict, c)) for c in CRITERIA}, verdict.reason,
                         cost_usd=routed.cost_usd)


def load_judge(conn: Any, tenant_id: str, *, settings: Any, router: Any) -> Judge:
    """The judge for `tenant_id` (call inside its tenant transaction): the offline judge when every
    deployment of the judge's alias is the offline provider, else the tenant's judge-rubric version."""
    deployments = router.catalog.deployments_for(settings.eval_judge_model)
    if all(d.provider == "offline" for d in deployments):
        return Judge(settings, router)
    from stratus.prompts import ensure_prompts_synced, resolve_prompt

    ensure_prompts_synced()  # publishes the packaged prompt files once per process
    return Judge(settings, router, resolve_prompt(conn, tenant_id, JUDGE_PROMPT))


def offline_judge(question: str, answer: str, passages: list[Any]) -> Judgement:
    from stratus.embeddings import get_embedder
    from stratus.guard.grounding import EMBEDDING_MODEL, groundedness
    from stratus.guard.rails import declines
    from stratus.llm import extractive

    if declines(answer):
        # A refusal makes no claim (faithful); whether declining was right is the refusal check's job.
        return Judgement("judge-offline", {"faithfulness": 1.0, "relevance": 0.5}, "declined")
    support = groundedness(answer, passages).score if passages else 0.0
    embedder = get_embedder(EMBEDDING_MODEL)
    q, a = extractive.sentence_vectors.embed(embedder, [question, answer])
    lexical = float(extractive.lexical_scores(extractive.content_terms(question),
                                              [extractive.content_terms(answer)])[0])
    relevance = extractive.SEMANTIC_WEIGHT * float(q @ a) + (1 - extractive.SEMANTIC_WEIGHT) * lexical
    # Onto the rubric's 1-5 steps, then back to 0..1, so both judges report on the same grid.
    scores = {"faithfulness": to_unit(_step(support)), "relevance": to_unit(_step(relevance))}
    return Judgement("judge-offline", scores, "offline judge: groundedness and question-answer similarity")


def _step(x: float) -> int:
    return int(min(5, max(1, 1 + round(max(0.0, min(1.0, x)) * 4))))
