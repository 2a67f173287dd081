"""What a run writes and later commands read back, as typed records: one dataclass each, written by
one writer and read by one reader that checks every field (record.py says how)."""

from enas.records.arch import ArchRecord
from enas.records.eval_line import EvalLine
from enas.records.lines import Candidate, MetricsLine, Trial
from enas.records.panels import CompareReport, RankReport
from enas.records.record import Record
from enas.records.result import Divergence, Result
from enas.records.sweep import SweepSummary

__all__ = ["ArchRecord", "Candidate", "CompareReport", "Divergence", "EvalLine", "MetricsLine", "RankReport", "Record",
           "Result", "SweepSummary", "Trial"]
