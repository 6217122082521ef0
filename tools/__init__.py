"""Measurement scripts: ``python -m tools.NAME --help`` from the repository root.

Each module is one tool with a ``main(argv)``; they import the project as installed or
from the checkout (the repository root is the working directory), never through
``sys.path`` edits. What a tool establishes goes into the docs page it concerns; its
output is not committed.
"""
