"""Every speed and memory measurement in one place, each reported as ratios measured side by side.

``model``: GemNet forward/backward cost by size and variant; ``md``: the batched engine against an
ASE loop, and what limits batching (``torchsim``, ``refill``: against TorchSim and against fixed
waves); ``labelling``: reference labels per second by worker count; ``training``: the cost of a
training step. ``timing`` is how every comparison is timed (in turns, median with the spread of
the rounds); ``workload`` which model the MD benchmarks run. ``gemrepro bench`` and the performance
appendix call these; no test asserts a timing.
"""
