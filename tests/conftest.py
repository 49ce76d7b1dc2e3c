"""Shared test configuration. The tests mirror the package: ``tests/<package>/test_*.py`` tests
``gemrepro.<package>``; project-wide checks (architecture, lint, pins, stage digests) stay in
``tests/`` beside the records they read (``stage_code.json``, ``field_scores_reference.json``).

The folders have no ``__init__.py``: pytest imports each test module by its file name, so every
``test_*.py`` name must be unique across folders, and a folder's helper module (``model_geometries``,
``stress_calculators``) is importable from the tests beside it. A fixture used in more than one
folder belongs here; none is today (the three ``model`` fixtures of tests/model/ build different
networks).
"""
