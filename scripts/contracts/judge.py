"""eval.judge's files: reports/judge/<run_id>/results.jsonl (``JudgeRow``) and summary.json (``JudgeSummary``).

Import them from ``scripts.contracts`` like every other contract; they live here because they are many:

    from scripts.contracts import JudgeSummary
    summary = JudgeSummary.model_validate_json(path.read_bytes())
    summary.tasks["productpage_extractor"].slots["price"].accuracy
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from scripts.contracts import Provenance, Record


class JudgeRow(Record):
    """One scored slot (``slot`` is ``label`` for a classification): reports/judge/<run_id>/results.jsonl."""

    id: str
    task: str
    domain: str
    valid: bool
    confidence: float | None
    slot: str
    reference: Any
    candidate: Any = Field(description="the parsed value, or the raw output (500 chars) when invalid")
    score: float
    method: Literal["exact", "numeric", "fuzzy", "set", "llm", "invalid", "truncated"]
    truncated: bool = Field(
        default=False, description="closed early by constrained decoding (max_new_tokens or the string bound): wrong"
    )
    outcome: Literal["correct", "wrong", "hallucination", "omission", "not_judged"]
    passed: bool
    undecided: bool
    rationale: str
    judge: str | None = Field(description="judged | cached | not_judged when the LLM judge saw it")
    cached: bool


class AcceptanceCheck(Record):
    metric: str
    op: Literal[">=", "<="]
    threshold: float
    value: float | None
    ok: bool


class Acceptance(Record):
    verdict: Literal["PASS", "FAIL", "NO THRESHOLDS"]
    checks: list[AcceptanceCheck]


class Latency(Record):
    """A task's generation speed, from the candidates' ``latency_s`` (all None: no candidate)."""

    mean_s: float | None = None
    p50_s: float | None = None
    p95_s: float | None = None
    output_tokens_per_s: float | None = None
    examples_per_s: float | None = None
    prompt_tokens_mean: float | None = None


class SlotStats(Record):
    """One extraction slot over a task's examples: a row of the report's per-slot table."""

    n: int
    passed: int
    accuracy: float | None
    accuracy_decided: float | None = Field(description="passed of the values that were judged (not_judged left out)")
    not_judged: int
    hallucinations: int
    omissions: int
    truncated: int = Field(default=0, description="values cut by constrained decoding (summaries before it: 0)")
    hallucination_rate: float | None = Field(description="of the values whose reference is empty")
    omission_rate: float | None = Field(description="of the values whose reference is filled")
    reference_empty: int
    methods: dict[str, int] = Field(description="scorer -> values it settled")
    llm_judged: int


class DomainStats(Record):
    n: int = Field(description="examples")
    accuracy: float | None = Field(description="examples whose every slot passed")
    slot_accuracy: float | None = Field(default=None, description="extraction: slot values passed")


class EscalationRow(Record):
    """One confidence threshold: the pages the small model keeps at or above it, the rest escalated."""

    threshold: float
    kept: int
    coverage: float
    accuracy_kept: float | None
    accuracy_overall: float | None = Field(description="escalated pages take the strong model's (reference) answer")
    strong_calls_saved: float
    prompt_tokens_saved: int
    prompt_tokens_saved_share: float


class Escalation(Record):
    n: int
    target_accuracy: float
    with_confidence: int
    curve: list[EscalationRow]
    recommended: EscalationRow | None = Field(description="the lowest threshold meeting the target, if any")


class TaskSummary(Record):
    kind: Literal["classification", "extraction"]
    n: int
    json_validity: float | None
    truncated_answers: int | None = Field(default=None, description="answers closed early by constrained decoding")
    latency: Latency
    classification: dict[str, Any] | None = Field(default=None, description="metrics, confusion, ci95")
    slots: dict[str, SlotStats] | None = Field(default=None, description="extraction: per-slot table")
    reference_empty_slots: int | None = None
    metrics: dict[str, int | float | None] = Field(description="headline metrics the acceptance thresholds read")
    per_domain: dict[str, DomainStats]
    escalation: Escalation
    acceptance: Acceptance


class JudgeRunStats(Record):
    """The LLM judge's part of a run: calls, cache hits, cost."""

    model: str
    api_base_set: bool
    needed: int
    enabled: bool
    max_cost_usd: float | None
    disabled_reason: str | None = None
    judged: int
    not_judged: int
    calls: int
    requests: int
    retries: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    errors: int
    error_examples: list[Any]
    budget_stopped: bool
    wall_s: float


class JudgeSummary(Record):
    """reports/judge/<run_id>/summary.json, read by eval.report, package.export and the eval.judge task."""

    tasks: dict[str, TaskSummary]
    judge: JudgeRunStats
    run_id: str
    split: str
    created_at: str
    model: list[str] = Field(description="the candidates' model labels, for display")
    provenance: list[Provenance] = Field(
        default_factory=list, description="where the judged candidates' models came from, each once; empty for "
        "candidates generated before it was recorded")
    constrained: list[bool]
    dataset: dict[str, Any]
    candidates_file: str
    candidates_sha256: str
    n: int
    references_without_candidate: int
    candidates_without_reference: int
    config: dict[str, Any]
