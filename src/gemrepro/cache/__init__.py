"""The ground floor: where data lives (paths), the content-addressed artifact cache, bundles of it, Dask.

Imports nothing of gemrepro above :mod:`gemrepro.config`, so every layer can cache its results.
"""
