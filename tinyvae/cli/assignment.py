"""``tinyvae assignment make|grade|gradescope``: present only where tinyvae/instructor/ exists (never in a student
copy); the commands themselves live in tinyvae.instructor.cli."""
from pathlib import Path

INSTRUCTOR = Path(__file__).resolve().parents[1] / "instructor" / "__init__.py"


def add_assignment(sub):
    """Add the instructor's commands to the subparsers ``sub``, where the instructor package is present."""
    if INSTRUCTOR.is_file():
        from ..instructor.cli import add_assignment_commands

        add_assignment_commands(sub)
