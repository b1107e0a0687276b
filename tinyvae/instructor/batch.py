"""Grading a folder of submissions (placeholder until the batch grader lands)."""
from pathlib import Path


def is_submission(path):
    path = Path(path)
    return (path / "tinyvae" / "__init__.py").is_file() or (path.name == "tinyvae" and (path / "__init__.py").is_file())
