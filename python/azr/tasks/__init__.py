"""The task model, prompts, parsing, normalisation and static checks of self-play.

This package's top level needs no executor: the modules that run things in the sandbox,
:mod:`azr.tasks.validation` (proposals), :mod:`azr.tasks.checking` (answers) and
:mod:`azr.tasks.plan` (the batching driver), are imported explicitly, or used through
:class:`azr.verify.Verifier`.
"""

from azr.tasks.ast_checks import AnswerForm as AnswerForm
from azr.tasks.ast_checks import Rejected as Rejected
from azr.tasks.ast_checks import SafetyPolicy as SafetyPolicy
from azr.tasks.ast_checks import canonical_arguments as canonical_arguments
from azr.tasks.ast_checks import canonical_value as canonical_value
from azr.tasks.ast_checks import check_safety as check_safety
from azr.tasks.ast_checks import is_literal as is_literal
from azr.tasks.normalize import NormalizedProgram as NormalizedProgram
from azr.tasks.normalize import ProgramPolicy as ProgramPolicy
from azr.tasks.normalize import normalize_program as normalize_program
from azr.tasks.parsing import FencedBlock as FencedBlock
from azr.tasks.parsing import InductionProposal as InductionProposal
from azr.tasks.parsing import ParseConfig as ParseConfig
from azr.tasks.parsing import Proposal as Proposal
from azr.tasks.parsing import extract_answer as extract_answer
from azr.tasks.parsing import fenced_blocks as fenced_blocks
from azr.tasks.parsing import format_blocks as format_blocks
from azr.tasks.parsing import format_response as format_response
from azr.tasks.parsing import parse_proposal as parse_proposal
from azr.tasks.parsing import parse_solution as parse_solution
from azr.tasks.prompts import build_prompt as build_prompt
from azr.tasks.prompts import propose_prompt as propose_prompt
from azr.tasks.prompts import solve_prompt as solve_prompt
from azr.tasks.types import SEED_INDUCTION_TASK as SEED_INDUCTION_TASK
from azr.tasks.types import SEED_TRIPLET as SEED_TRIPLET
from azr.tasks.types import AbductionTask as AbductionTask
from azr.tasks.types import DeductionTask as DeductionTask
from azr.tasks.types import ErrorTask as ErrorTask
from azr.tasks.types import InductionTask as InductionTask
from azr.tasks.types import IOPair as IOPair
from azr.tasks.types import Outcome as Outcome
from azr.tasks.types import ProposeRequest as ProposeRequest
from azr.tasks.types import Reason as Reason
from azr.tasks.types import Role as Role
from azr.tasks.types import SolveTask as SolveTask
from azr.tasks.types import TaskType as TaskType
from azr.tasks.types import Triplet as Triplet

__all__ = [
    "SEED_INDUCTION_TASK",
    "SEED_TRIPLET",
    "AbductionTask",
    "AnswerForm",
    "DeductionTask",
    "ErrorTask",
    "FencedBlock",
    "IOPair",
    "InductionProposal",
    "InductionTask",
    "NormalizedProgram",
    "Outcome",
    "ParseConfig",
    "ProgramPolicy",
    "Proposal",
    "ProposeRequest",
    "Reason",
    "Rejected",
    "Role",
    "SafetyPolicy",
    "SolveTask",
    "TaskType",
    "Triplet",
    "build_prompt",
    "canonical_arguments",
    "canonical_value",
    "check_safety",
    "extract_answer",
    "fenced_blocks",
    "format_blocks",
    "format_response",
    "is_literal",
    "normalize_program",
    "parse_proposal",
    "parse_solution",
    "propose_prompt",
    "solve_prompt",
]
