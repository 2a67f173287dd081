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
  rnn_kernels_per_step           device kernels one supernet training step dispatches, backward
                                 included (ATen operations less views and allocations), on the
                                 first drawn architecture: on a GPU each is a launch from the
                                 host, which bounds small steps there
  controller_ms_per_arch         sampling one architecture plus its share of a REINFORCE update
  controller_sample_ms_per_arch  no-grad batch sampling, as the supernet phase does it
  controller_search_share        controller time / wall time of a short default search
  peak_rss_mb                    peak resident memory of that search
  paper_search_hours             projected wall time of the conf/ptb.yaml search on this device

Image figures, per space (micro_, macro_), on synthetic images (sizes: default = the shapes preset,
reference = micro at width 16, 6 + 2 cells, B = 5, batch 64 on 32x32 images, paper = the cifar10
search preset; --quick leaves paper out):
  <space>_images_per_s           shared-weight training steps, a sampled architecture per step
  <space>_child_images_per_s     the same step for one fixed child (space.child(arch))
  <space>_overhead_ratio         supernet step time / child step time, both on the child's
                                 architecture (below 1: faster)
  <space>_kernels_per_step       as rnn_kernels_per_step
  <space>_retrain_images_per_s   a retrain step of a child with the retrain preset's settings (shapes'
                                 at default, cifar10_<space>_final at paper)
  <space>_paper_search_hours     projected wall time of the conf/cifar10_<space>.yaml search on this
                                 device (paper size only)

Every table and JSON object carries the load average: on a machine shared with other processes,
torch's multi-threaded ops stall whenever another process holds a core (single steps then take
seconds), so figures taken there with several threads are noise; `--threads 1` gives steady ones.

benchmarks/gpu.sh runs the GPU-only tests, then the recurrent and controller suites at the reference and paper sizes and the
micro suite at the paper size on one CUDA GPU, and prints the projections of the PTB and CIFAR-10
micro searches.
"""
