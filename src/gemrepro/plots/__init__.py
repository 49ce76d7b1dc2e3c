"""The book's figures, one module per chapter family, sharing one style (:mod:`gemrepro.plots.style`).

``data`` (dataset, learning curves, molecule drawings), ``md`` (temperature sweep, reference
convergence), ``holes``, ``oos`` (out-of-sample), ``pretraining``, ``committee``, ``performance``
and ``survival`` (Kaplan-Meier curves used by several). Figures take tables and return a
``matplotlib`` figure; none computes anything.
"""
