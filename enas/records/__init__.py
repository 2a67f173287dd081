"""What a run writes and later commands read back, as typed records: one dataclass each, written by
one writer and read by one reader that checks every field (record.py says how)."""

from enas.records.panels import CompareReport, RankReport
from enas.records.record import Record
from enas.records.result import Divergence, Result
from enas.records.sweep import SweepSummary

__all__ = ["CompareReport", "Divergence", "RankReport", "Record", "Result", "SweepSummary"]
