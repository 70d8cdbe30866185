"""Workflows on the user's own model and data (shell layer, used by the command line).

- :mod:`.models`: model specs (``file.py:factory``, ``package.module:factory``, Hugging Face folder, saved
  file, reference name) and weights files (safetensors / ``weights_only`` state dicts);
- :mod:`.data`: NPZ, CSV, image folders, bundled sets; the task's loss and metric;
- :mod:`.recipe`: YAML recipes validated against the method configs, lock files;
- :mod:`.runner`: :func:`run_recipe` and :func:`evaluate_file`.

Example:
    >>> from prunequant.workflow import load_recipe, run_recipe
    >>> result = run_recipe(load_recipe("recipes/analytic.yaml"), "out")  # doctest: +SKIP
"""
from .data import DataSource, Task, check_data_source, load_split, make_task
from .models import ModelSource, build_model_from, check_model_source, read_state_dict
from .recipe import Recipe, Step, load_recipe, parse_recipe
from .runner import RunResult, evaluate_file, run_recipe

__all__ = ["DataSource", "ModelSource", "Recipe", "RunResult", "Step", "Task", "build_model_from",
           "check_data_source", "check_model_source", "evaluate_file", "load_recipe", "load_split", "make_task",
           "parse_recipe", "read_state_dict", "run_recipe"]
