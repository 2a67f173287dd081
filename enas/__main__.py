"""`python -m enas` (and `torchrun ... -m enas`): the `enas` command line."""

from cli import main

main()
