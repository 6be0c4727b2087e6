"""Shapes of a root-cause analysis: the answer schema sent to Gemini, and the stored record around it.

``RootCauseAnalysis`` is the ``response_schema`` of the Gemini request, so it keeps to what the
Gemini schema subset expresses well: objects, strings, numbers, booleans, lists and string enums.
The offline analyzer fills the same shape, so the page, the export and the Airflow triage read one
format whichever engine answered.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, field_validator


class Category(StrEnum):
    """Root-cause categories: those of the failure families (incident_contracts.failures) and others."""

    DATABASE = "database"
    MEMORY = "memory"
    DEPENDENCY = "dependency"
    DEPLOYMENT = "deployment"
    DISK = "disk"
    CERTIFICATE = "certificate"
    CACHE = "cache"
    NETWORK = "network"
    CONFIGURATION = "configuration"
    CAPACITY = "capacity"
    UNKNOWN = "unknown"


class Priority(StrEnum):
    NOW = "now"  # do it immediately to stop the bleeding
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class RootCause(BaseModel):
    statement: str = Field(description="The most likely root cause, one or two sentences.")
    category: Category = Field(description="Root-cause family.")
    confidence: float = Field(ge=0.0, le=1.0, description="0 to 1: how sure the evidence makes you.")
    confidence_rationale: str = Field(description="Why this confidence: what supports it, what is missing.")


class EvidenceItem(BaseModel):
    finding: str = Field(description="A fact observed in the data that supports or weakens the root cause.")
    citations: list[str] = Field(description="IDs of the data items this finding relies on (S1, E2, M1, ...).")
    supports: bool = Field(default=True, description="True if it supports the root cause, false if it weakens it.")


class TimelineEntry(BaseModel):
    time: str = Field(description="UTC time as given in the data (ISO 8601), or a relative description.")
    event: str = Field(description="What happened at that time.")
    citations: list[str] = Field(default_factory=list, description="IDs of the data items showing it.")


class ActionStep(BaseModel):
    order: int = Field(ge=1, description="1 for the first step to take.")
    action: str = Field(description="What to do. Commands are suggestions for a human to run; never run.")
    priority: Priority
    owner: str = Field(description="Team or role that should do it (use the service owner when known).")
    rationale: str = Field(default="", description="Why this step, in a few words.")


class RootCauseAnalysis(BaseModel):
    """The answer: what happened, why, how sure, and what to do."""

    summary: str = Field(description="Two or three sentences for the incident channel.")
    root_cause: RootCause
    evidence: list[EvidenceItem] = Field(description="Findings drawn only from the data provided, with citations.")
    timeline: list[TimelineEntry] = Field(description="What happened, in time order.")
    action_plan: list[ActionStep] = Field(description="Ordered steps to mitigate and fix.")
    verification: list[str] = Field(description="What to check to confirm (or refute) the root cause.")
    prevention: list[str] = Field(description="Changes that would stop this from happening again.")
    insufficient_evidence: bool = Field(
        description="True when the data does not support a confident root cause; say what is missing.")
    missing_information: list[str] = Field(default_factory=list,
                                           description="Data that would settle the question.")

    @field_validator("action_plan")
    @classmethod
    def _ordered(cls, steps: list[ActionStep]) -> list[ActionStep]:
        return sorted(steps, key=lambda s: s.order)

    def cited_ids(self) -> set[str]:
        ids: set[str] = set()
        for item in self.evidence:
            ids.update(item.citations)
        for entry in self.timeline:
            ids.update(entry.citations)
        return ids


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0
    total_tokens: int = 0


class SentRequest(BaseModel):
    """Exactly what left (or, offline, would have left) the machine, after redaction."""

    system_instruction: str
    prompt: str
    redactions: dict[str, int] = Field(default_factory=dict)  # kind -> how many were replaced
    evidence_ids: list[str] = Field(default_factory=list)


class RunbookMatch(BaseModel):
    runbook_id: str
    title: str
    score: float
    matched_terms: list[str] = Field(default_factory=list)


Engine = Literal["gemini", "offline"]


class Analysis(BaseModel):
    """A stored analysis of one incident by one engine/model and prompt version."""

    analysis_id: str
    incident_id: str
    incident_update_seq: int | None = None  # the incident state that was analysed
    engine: Engine
    model: str
    prompt_version: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    duration_ms: float = 0.0
    usage: TokenUsage | None = None
    result: RootCauseAnalysis
    sent: SentRequest
    runbooks: list[RunbookMatch] = Field(default_factory=list)  # offline engine: ranked candidates
    warnings: list[str] = Field(default_factory=list)  # e.g. citations of ids that were never sent

    @property
    def cache_key(self) -> tuple[str, str, str]:
        return (self.incident_id, self.model, self.prompt_version)

    @property
    def label(self) -> str:
        return (f"Gemini ({self.model})" if self.engine == "gemini"
                else "Offline analysis (runbook knowledge base, no AI)")


class Feedback(BaseModel):
    analysis_id: str
    incident_id: str
    engine: Engine
    model: str
    prompt_version: str
    useful: bool
    comment: str = ""
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
