"""Linear and mixed-integer programs, solved with HiGHS through its own binding (highspy).

scipy.optimize.milp wraps the same solver, but it rebuilds the solver and copies its basis and
duals out element by element on every call, which costs more than the solve itself on a plan's
program (a few thousand columns), and it cannot start a second solve from the first one's basis.
Here one `Program` keeps its HiGHS instance: `resolve` changes costs and bounds only, so HiGHS
starts from the basis it has (a planner's second pass moves a few bounds).
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np


@dataclass(frozen=True)
class SparseRows:
    """A constraint matrix row by row (CSR): `start[i]:start[i+1]` index `index` and `value`."""

    start: np.ndarray
    index: np.ndarray
    value: np.ndarray
    n_rows: int
    n_cols: int


def sparse_rows(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int,
                n_cols: int) -> SparseRows:
    """Triplets as rows; entries for the same row and column are added up (HiGHS refuses
    duplicates)."""
    key, summed = np.unique(np.asarray(rows, dtype=np.int64) * n_cols + cols, return_inverse=True)
    value = np.bincount(summed, weights=values, minlength=len(key))
    row_of = key // n_cols
    start = np.searchsorted(row_of, np.arange(n_rows + 1)).astype(np.int32)
    return SparseRows(start, (key % n_cols).astype(np.int32), value, n_rows, n_cols)


# model statuses whose solution is usable (a MIP stopped at a limit keeps its incumbent)
_SOLVED = {highspy.HighsModelStatus.kOptimal: "optimal"}
_STOPPED = (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kIterationLimit,
            highspy.HighsModelStatus.kSolutionLimit)


class Program:
    """min cost @ x  subject to  row_lo <= A @ x <= row_hi,  col_lo <= x <= col_hi."""

    def __init__(self, cost: np.ndarray, col_lo: np.ndarray, col_hi: np.ndarray,
                 matrix: SparseRows, row_lo: np.ndarray, row_hi: np.ndarray):
        # the plain binding: highspy.Highs adds Python callbacks and prints a banner
        self._highs = highspy._Highs()
        self._highs.setOptionValue("output_flag", False)
        self.n_cols, self.n_rows = matrix.n_cols, matrix.n_rows
        self.matrix = matrix
        self._row_lo, self._row_hi = _f64(row_lo, self.n_rows), _f64(row_hi, self.n_rows)
        self._integer = False
        status = self._highs.passModel(
            self.n_cols, self.n_rows, len(matrix.value), int(highspy.MatrixFormat.kRowwise),
            int(highspy.ObjSense.kMinimize), 0.0, _f64(cost, self.n_cols),
            _f64(col_lo, self.n_cols), _f64(col_hi, self.n_cols), _f64(row_lo, self.n_rows),
            _f64(row_hi, self.n_rows), matrix.start, matrix.index, _f64(matrix.value, None),
            np.zeros(self.n_cols, dtype=np.int32))  # continuous until solve says otherwise
        if status == highspy.HighsStatus.kError:
            raise ValueError("HiGHS refused the program (bounds or matrix out of shape)")

    def same_matrix(self, matrix: SparseRows) -> bool:
        m = self.matrix
        return (m.n_rows, m.n_cols) == (matrix.n_rows, matrix.n_cols) and all(
            np.array_equal(a, b) for a, b in ((m.start, matrix.start), (m.index, matrix.index),
                                              (m.value, matrix.value)))

    def resolve(self, cost: np.ndarray, col_lo: np.ndarray, col_hi: np.ndarray,
                row_lo: np.ndarray, row_hi: np.ndarray) -> None:
        """New costs and bounds on the same matrix; the next solve starts from this basis."""
        self.relax()
        cols = np.arange(self.n_cols, dtype=np.int32)
        self._highs.changeColsCost(self.n_cols, cols, _f64(cost, self.n_cols))
        self._highs.changeColsBounds(self.n_cols, cols, _f64(col_lo, self.n_cols),
                                     _f64(col_hi, self.n_cols))
        row_lo, row_hi = _f64(row_lo, self.n_rows), _f64(row_hi, self.n_rows)
        # row by row, only where they moved (a planner's second pass: its energy rows); the
        # binding of highspy 1.10 and before has no call for many rows' bounds at once
        moved = np.flatnonzero((row_lo != self._row_lo) | (row_hi != self._row_hi))
        for row in moved.tolist():
            self._highs.changeRowBounds(row, row_lo[row], row_hi[row])
        self._row_lo, self._row_hi = row_lo, row_hi

    def relax(self) -> None:
        """Every column continuous again (after `solve(integer=...)`)."""
        if self._integer:
            self._set_integrality(np.arange(self.n_cols), 0)
            self._integer = False

    def solve(self, time_limit_s: float, integer: np.ndarray | None = None,
              mip_rel_gap: float = 1e-4) -> tuple[np.ndarray | None, str]:
        """The solution and "optimal", or None (or a MIP's incumbent) and why not. `integer`:
        the columns that must take whole values."""
        h = self._highs
        h.setOptionValue("time_limit", max(1e-3, float(time_limit_s)))
        if integer is not None and len(integer):
            self._set_integrality(integer, 1)
            self._integer = True
            h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
        h.run()
        status = h.getModelStatus()
        if status in _SOLVED:
            return np.asarray(h.getSolution().col_value), _SOLVED[status]
        reason = h.modelStatusToString(status)
        if self._integer and status in _STOPPED and h.getSolution().value_valid:
            return np.asarray(h.getSolution().col_value), reason
        return None, reason

    def _set_integrality(self, cols: np.ndarray, kind: int) -> None:
        cols = np.asarray(cols, dtype=np.int32)
        self._highs.changeColsIntegrality(len(cols), cols,
                                          np.full(len(cols), kind, dtype=np.uint8))


def _f64(values, size: int | None) -> np.ndarray:
    """A contiguous float64 array (of `size`, a scalar spread over it), as the binding takes."""
    values = values if size is None else np.broadcast_to(values, (size,))
    return np.ascontiguousarray(values, dtype=np.float64)
