"""`python -m switchyard`."""

from switchyard.cli import main

main()
