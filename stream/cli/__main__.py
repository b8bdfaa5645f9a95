"""`python -m stream.cli ...`: what tests and benchmarks start as a child process."""

from stream.cli.main import main

# Guarded: the worker's compute process is started with spawn, which imports this module again
# (as __mp_main__) in the child.
if __name__ == "__main__":
    main()
