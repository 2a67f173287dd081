"""Speed and memory benchmarks of `enas` (`make bench`, `python -m benchmarks`). Not tests: nothing
here asserts a time; tests/test_benchmarks.py only checks that the code runs at toy sizes.

Figures (medians of repetitions after a warm-up; sizes: default preset, reference = the paper's
cell at hidden 200, paper = conf/ptb.yaml with PTB's 10k vocabulary):
  rnn_supernet_tokens_per_s      shared-weight training steps, a sampled architecture per step
  rnn_child_tokens_per_s         the same step for one fixed cell written plainly in PyTorch
  rnn_overhead_ratio             supernet step time / fixed cell step time (below 1: faster)
  rnn_mfu                        time of the step's matrix products alone / time of the step
  rnn_matmul_bound_tokens_per_s  tokens/s if the step were its matrix products alone
  rnn_reward_ms                  one reward: the supernet on one validation window
  controller_ms_per_arch         sampling one architecture plus its share of a REINFORCE update
  controller_sample_ms_per_arch  no-grad batch sampling, as the shared phase does it
  controller_search_share        controller time / wall time of a short default search
  peak_rss_mb                    peak resident memory of that search
  paper_search_hours             projected wall time of the conf/ptb.yaml search on this device
Image-space figures (micro_images_per_s, macro_images_per_s) come with the micro and macro spaces.

Every table and JSON object carries the load average: on a machine shared with other processes,
torch's multi-threaded ops stall whenever another process holds a core (single steps then take
seconds), so figures taken there with several threads are noise; `--threads 1` gives steady ones.

benchmarks/gpu.sh runs the recurrent and controller suites at the reference and paper sizes on one
CUDA GPU and prints the projection.
"""
