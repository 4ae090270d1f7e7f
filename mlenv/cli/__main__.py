"""`python -m mlenv.cli ...`: the same as the `mlenv` console script."""

from .entry import main

main()
