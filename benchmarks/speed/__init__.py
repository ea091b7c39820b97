"""Speed benchmarks: what reading motion, drawing masks, loading clips and a training step cost."""
