"""Loggers for ``fit(..., loggers=[...])``: TensorBoard, ``history.csv``, or a user's own.

::

    import depthlab as dl

    dl.run(spec, loggers=[dl.loggers.TensorBoard("tb/run1")])

See :mod:`depthlab.train.loggers` for the :class:`Logger` protocol (three methods) and when
``fit`` calls each.
"""

from depthlab.train.loggers import (
    CSVHistory,
    HParam,
    Logger,
    TensorBoard,
    hparams_of,
    log_diagnosis,
    write_history_csv,
)

__all__ = [
    "CSVHistory",
    "HParam",
    "Logger",
    "TensorBoard",
    "hparams_of",
    "log_diagnosis",
    "write_history_csv",
]
