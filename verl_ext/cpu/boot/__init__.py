"""Holds ``sitecustomize.py``, the interpreter start-up hook of the CPU path (see that file).

This folder itself goes on ``PYTHONPATH`` (scripts/lib/cpu_env.sh); it is a package only so it ships in wheels.
"""
