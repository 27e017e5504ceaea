"""The guard's record of a request (Verdict, GuardSummary, GuardState) now lives in stratus.workflow_state,
with the rest of the workflow's state. These names stay importable from here only for callers not yet
updated (gateway/chat.py); new code imports stratus.workflow_state."""

from stratus.workflow_state import Action, GuardState, GuardSummary, Stage, Verdict

__all__ = ["Action", "GuardState", "GuardSummary", "Stage", "Verdict"]
