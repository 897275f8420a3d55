"""``depthlm grpo``: the GRPO recipe (depthlm.recipes.grpo), YAML + flags as ``trl grpo``; flags the recipe does
not know (``--num_processes 2``, ``--accelerate_config recipes/accelerate/ddp.yaml``) run it under
``accelerate launch``. ``depthlm grpo --help`` lists every recipe flag."""

from __future__ import annotations


def run_argv(argv: list[str]) -> int:
    """The recipe parses the arguments itself (TrlParser), so the command passes them through."""
    from depthlm.recipes.grpo import cli

    return cli(argv, launch=True)
