"""`python -m stream.cli ...`: what tests and benchmarks start as a child process."""

from stream.cli.main import main

main()
