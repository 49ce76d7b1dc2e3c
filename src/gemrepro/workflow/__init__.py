"""Orchestration: scales, the artifact cache, paths and parallel campaigns."""

from gemrepro.cache.artifacts import Artifact, artifact_key, get_or_create, load_artifact
from gemrepro.cache.paths import artifacts_dir, data_dir, repo_root
from gemrepro.config.scales import SCALES, Scale, get_scale

__all__ = [
    "Artifact",
    "artifact_key",
    "get_or_create",
    "load_artifact",
    "artifacts_dir",
    "data_dir",
    "repo_root",
    "SCALES",
    "Scale",
    "get_scale",
]
