"""Every speed and memory measurement in one place, each reported as ratios measured side by side.

``model``: GemNet forward/backward cost by size and variant; ``md``: the batched engine against an
ASE loop, and what limits batching; ``labelling``: reference labels per second by worker count.
``gemrepro bench`` and the performance appendix call these; no test asserts a timing.
"""
