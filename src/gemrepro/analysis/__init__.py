"""Analysis of trajectories and labels: stability and time to failure, errors, statistics."""
