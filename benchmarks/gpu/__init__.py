"""`./run bench gpu`: one command that checks and measures mgm on a CUDA GPU (docs/GPU.md).

    bench.py       the command: sections in order under one time budget, the table, runs/bench/gpu.json
    sizes.py       FULL (a GPU) and SMOKE (the CPU, toy sizes): the only differences between the two
    steps.py       pre-training / fine-tuning step speed, ours vs transformers; FLOPs, peak memory, batch search
    loader.py      DataLoader clips/s on generated H.264 clips, against what the GPU consumes
    experiment.py  `mgm experiment masking --preset gpu`, run by the bench in a subprocess
"""
