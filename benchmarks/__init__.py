"""grokjax's benchmarks, outside the installed package: run them from a checkout, e.g. `python -m benchmarks.bench`.

bench: steady state and whole processes against the paper's PyTorch loop (paper_loop); device: all that
one call on a borrowed GPU measures; kernels: a chunk's kernels by kind from JAX's profiler; steps: every
way of computing the step against the cost model; explore: the explore page's size and load time;
refine: refinement against a dense grid; browser: headless Chromium for the pages.
"""
