"""Instructor-only tools: the assignment manifest, the handout maker and the grader.

This package is never copied into a student's folder (``tinyvae assignment make`` leaves it out), so the CLI offers
``tinyvae assignment ...`` only where it exists.
"""
