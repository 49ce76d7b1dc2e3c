"""The chapters' computations: each study builds its cache parameters from a resolved
:class:`~gemrepro.config.scales.Scale` and gets (or computes) its artifacts through
:func:`gemrepro.cache.artifacts.get_or_create`; :mod:`gemrepro.studies.stages` records each
cached stage's code digest, with evidence from :mod:`gemrepro.studies.samplers`. Nothing here
knows there is a book (:mod:`gemrepro.book`)."""
