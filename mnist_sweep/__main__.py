"""`python -m mnist_sweep ...`: the same command line as `mnist-sweep ...`."""

from .cli import main

if __name__ == "__main__":
    main()
