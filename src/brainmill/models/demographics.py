"""Demographics as the numbers a conditioned model sees: standardised and one-hot.

:class:`DemographicEncoder` is fitted on training subjects: continuous columns are standardised
with their mean and (population) standard deviation, categorical ones one-hot encoded with the
levels seen at fit time (a binary column gives two columns, as in the DemoVAE reference). An
unseen level, a missing column, a missing or non-numeric value are :class:`DataError`s naming
the column, the subjects and what was expected. numpy only at import; pandas when used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from brainmill.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DemographicEncoder"]



def _python_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _sorted_levels(values: Sequence[Any]) -> list[Any]:
    levels = [_python_scalar(v) for v in values]
    try:
        return sorted(levels)
    except TypeError:  # mixed types: a deterministic order anyway
        return sorted(levels, key=lambda v: (type(v).__name__, str(v)))


class DemographicEncoder:
    """Demographics table → float matrix the decoder is conditioned on.

    Continuous columns become ``(x − mean) / std`` with the fit data's mean and population std
    (ddof 0, as scikit-learn's StandardScaler); categorical columns become one-hot indicators
    over the levels seen at fit, in sorted order (a binary column gives 2 columns, as the
    reference does). Output columns: the continuous ones in the given order, then each
    categorical column's levels (named ``"sex=F"``).

    Attributes
    ----------
    continuous_, categorical_ : list[str]
        Column names, in output order.
    mean_, std_ : dict[str, float]
        Standardisation of each continuous column.
    levels_ : dict[str, list]
        Levels of each categorical column (python scalars, sorted).
    columns_ : list[str]
        Names of the output columns.
    n_features_ : int
        Number of output columns.
    """

    def fit(self, demographics: pd.DataFrame, continuous: Sequence[str] = (),
            categorical: Sequence[str] = ()) -> DemographicEncoder:
        """Learn means/stds and levels from ``demographics`` (one row per subject).

        Raises
        ------
        DataError
            A missing column (listing the available ones), a missing or non-numeric value
            (naming the subjects), a constant continuous column.
        ValueError
            A column named twice.
        """
        continuous, categorical = list(continuous), list(categorical)
        names = continuous + categorical
        if any(not isinstance(c, str) for c in names):
            raise ValueError(f"DemographicEncoder: column names must be strings, got "
                             f"continuous={continuous!r}, categorical={categorical!r}")
        twice = sorted({c for c in names if names.count(c) > 1})
        if twice:
            raise ValueError(f"DemographicEncoder: column(s) {twice} are named twice (each must be "
                             "either continuous or categorical, once)")
        df = _as_frame(demographics)
        self.continuous_, self.categorical_ = continuous, categorical
        self.mean_, self.std_, self.levels_ = {}, {}, {}
        for col in continuous:
            values = _continuous_values(df, col)
            std = float(values.std())
            if not std > 0:
                raise DataError(f"demographic column {col!r} is constant ({values[0]!r}) in the "
                                "fit data, so it cannot be standardised",
                                expected="at least two different values; drop the column")
            self.mean_[col], self.std_[col] = float(values.mean()), std
        for col in categorical:
            values = _categorical_values(df, col)
            self.levels_[col] = _sorted_levels(list(dict.fromkeys(values.tolist())))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "levels_"):
            raise ValueError("DemographicEncoder is not fitted: call fit(demographics, "
                             "continuous, categorical) first")

    @property
    def columns_(self) -> list[str]:
        self._check_fitted()
        return list(self.continuous_) + [f"{c}={lv}" for c in self.categorical_
                                         for lv in self.levels_[c]]

    @property
    def n_features_(self) -> int:
        return len(self.columns_)

    @property
    def blocks_(self) -> list[tuple[str, str, slice]]:
        """``(column, "continuous" | "categorical", output slice)`` for each demographic."""
        self._check_fitted()
        blocks: list[tuple[str, str, slice]] = []
        start = 0
        for col in self.continuous_:
            blocks.append((col, "continuous", slice(start, start + 1)))
            start += 1
        for col in self.categorical_:
            k = len(self.levels_[col])
            blocks.append((col, "categorical", slice(start, start + k)))
            start += k
        return blocks

    def transform(self, demographics: pd.DataFrame) -> np.ndarray:
        """Encode ``demographics`` → ``(n_rows, n_features_)`` float64.

        Raises
        ------
        DataError
            A missing column, a missing/non-numeric value, or a categorical level not seen at
            fit (naming the column, the level, the subjects and the known levels).
        """
        self._check_fitted()
        df = _as_frame(demographics)
        out = np.zeros((len(df), self.n_features_))
        for col, kind, sl in self.blocks_:
            if kind == "continuous":
                out[:, sl.start] = (_continuous_values(df, col) - self.mean_[col]) / self.std_[col]
                continue
            values = _categorical_values(df, col)
            index = {lv: i for i, lv in enumerate(self.levels_[col])}
            codes = np.array([index.get(_python_scalar(v), -1) for v in values])
            unseen = codes < 0
            if unseen.any():
                bad = list(dict.fromkeys(values[unseen].tolist()))
                raise DataError(
                    f"demographic column {col!r} has level(s) {bad} that were not in the fit "
                    f"data (subjects {_labels(df, unseen)})",
                    expected=f"one of the known levels {self.levels_[col]}",
                    hint="refit the model with these subjects' levels, or map them to a known "
                         "level")
            out[np.arange(len(df)), sl.start + codes] = 1.0
        return out

    def fit_transform(self, demographics: pd.DataFrame, continuous: Sequence[str] = (),
                      categorical: Sequence[str] = ()) -> np.ndarray:
        """``fit(...)`` then ``transform(demographics)``."""
        return self.fit(demographics, continuous, categorical).transform(demographics)

    def inverse_transform(self, encoded: np.ndarray) -> pd.DataFrame:
        """Encoded rows → demographics table (continuous un-standardised, categorical argmax).

        Parameters
        ----------
        encoded : ndarray, shape (n_rows, n_features_)

        Returns
        -------
        pandas.DataFrame
            Columns ``continuous_ + categorical_``, index ``0..n_rows-1``.
        """
        import pandas as pd

        self._check_fitted()
        encoded = np.asarray(encoded, dtype=float)
        if encoded.ndim != 2 or encoded.shape[1] != self.n_features_:
            raise ValueError(f"inverse_transform: encoded has shape {encoded.shape}, expected "
                             f"(n_rows, {self.n_features_}) with columns {self.columns_}")
        data: dict[str, Any] = {}
        for col, kind, sl in self.blocks_:
            if kind == "continuous":
                data[col] = encoded[:, sl.start] * self.std_[col] + self.mean_[col]
            else:
                levels = self.levels_[col]
                data[col] = [levels[i] for i in encoded[:, sl].argmax(axis=1)]
        return pd.DataFrame(data, columns=self.continuous_ + self.categorical_)

    def to_dict(self) -> dict[str, Any]:
        """Fitted state as plain JSON-serialisable values (see :meth:`from_dict`)."""
        self._check_fitted()
        return {"continuous": list(self.continuous_), "categorical": list(self.categorical_),
                "mean": dict(self.mean_), "std": dict(self.std_),
                "levels": {c: list(v) for c, v in self.levels_.items()}}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> DemographicEncoder:
        """Rebuild a fitted encoder from :meth:`to_dict` output."""
        keys = {"continuous", "categorical", "mean", "std", "levels"}
        if not isinstance(state, Mapping) or set(state) != keys:
            raise ValueError(f"DemographicEncoder.from_dict: expected the keys {sorted(keys)}, "
                             f"got {sorted(state) if isinstance(state, Mapping) else state!r}")
        enc = cls()
        enc.continuous_ = list(state["continuous"])
        enc.categorical_ = list(state["categorical"])
        enc.mean_ = {c: float(state["mean"][c]) for c in enc.continuous_}
        enc.std_ = {c: float(state["std"][c]) for c in enc.continuous_}
        enc.levels_ = {c: list(state["levels"][c]) for c in enc.categorical_}
        return enc


def _as_frame(demographics: Any) -> pd.DataFrame:
    import pandas as pd

    if not isinstance(demographics, pd.DataFrame):
        raise TypeError(f"demographics must be a pandas DataFrame (one row per subject), got "
                        f"{type(demographics).__name__}")
    return demographics


def _labels(df: pd.DataFrame, mask: np.ndarray, limit: int = 10) -> str:
    labels = [str(v) for v in df.index[mask]]
    more = f" and {len(labels) - limit} more" if len(labels) > limit else ""
    return ", ".join(labels[:limit]) + more


def _column(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df.columns:
        raise DataError(f"the demographics table has no column {col!r}",
                        expected=f"one of its columns {[str(c) for c in df.columns]}")
    return df[col]


def _continuous_values(df: pd.DataFrame, col: str) -> np.ndarray:
    import pandas as pd

    raw = _column(df, col)
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(f"demographic column {col!r} is missing or not a finite number for "
                        f"subjects {_labels(df, bad)} (values {raw[bad].tolist()[:10]})",
                        expected="a number for every subject")
    return values


def _categorical_values(df: pd.DataFrame, col: str) -> np.ndarray:
    raw = _column(df, col)
    bad = raw.isna().to_numpy()
    if bad.any():
        raise DataError(f"demographic column {col!r} is missing for subjects {_labels(df, bad)}",
                        expected="a level for every subject")
    return raw.to_numpy(dtype=object)
