"""Running a recipe from the command line, as ``trl sft`` does: YAML + flags go to the recipe's
TrlParser; flags it does not know are ``accelerate launch`` flags (``--num_processes 2``,
``--config_file X`` or ``--accelerate_config X``), and when there are any the recipe's own file
is started under ``accelerate launch`` with them. Without any, it trains in this process."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from depthlm.errors import DepthLMError


def split_launch_args(all_args: list[str], cli_remaining: list[str]) -> tuple[list[str], list[str]]:
    """(accelerate flags, recipe flags): ``cli_remaining`` is an ordered subsequence of ``all_args``."""
    remaining = iter(cli_remaining)
    current = next(remaining, None)
    recipe = []
    for arg in all_args:
        if current is not None and arg == current:
            current = next(remaining, None)
        else:
            recipe.append(arg)
    launch = list(cli_remaining)
    if "--accelerate_config" in launch:
        i = launch.index("--accelerate_config")
        if i + 1 >= len(launch):
            raise DepthLMError("--accelerate_config needs a file (e.g. recipes/accelerate/ddp.yaml)")
        launch = ["--config_file", launch[i + 1], *launch[:i], *launch[i + 2 :]]
    return launch, recipe


def run_recipe(
    script: str,
    name: str,
    make_parser: Callable,
    main: Callable,
    argv: list[str] | None = None,
    *,
    launch: bool,
) -> int:
    """Parse ``argv`` and train; with ``launch``, unknown flags start ``accelerate launch script``."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser(prog=f"depthlm {name}")
    try:
        if not launch:
            return _train(main, name, parser.parse_args_and_config(argv))
        *parsed, config_remaining, cli_remaining = parser.parse_args_and_config(
            argv, return_remaining_strings=True, separate_remaining_strings=True
        )
        if config_remaining:
            raise DepthLMError(f"unknown keys in the YAML config: {' '.join(config_remaining)}")
        launch_args, recipe_args = split_launch_args(argv, cli_remaining)
        if not launch_args:
            return _train(main, name, parsed)
    except DepthLMError as err:
        print(f"depthlm {name}: error: {err}", file=sys.stderr)
        return 2
    from accelerate.commands.launch import launch_command, launch_command_parser

    launch_command(launch_command_parser().parse_args([*launch_args, script, *recipe_args]))
    return 0


def _train(main: Callable, name: str, parsed) -> int:
    try:
        main(*parsed)
    except DepthLMError as err:  # bad records, settings or model folder: one clear line, no traceback
        print(f"depthlm {name}: error: {err}", file=sys.stderr)
        return 2
    return 0
