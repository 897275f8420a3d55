"""The ``depthlm`` command. Each subcommand lives in its own module and is imported
only when used, so ``depthlm render`` never pays for importing vLLM."""

from __future__ import annotations

import importlib
import sys

# name -> (module, one-line help). The module defines ``add_arguments(parser)`` and ``run(args) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "render": ("depthlm.commands.render", "save what the model sees for one query"),
    "tiny-model": ("depthlm.commands.tiny_model", "build a random-weight tiny Qwen-VL model offline"),
    "build": ("data_builders.cli", "turn a raw 3D dataset into DepthLMBench records"),
    "eval": ("depthlm.commands.eval", "score a model on DepthLMBench record sets"),
    "leaderboard": ("depthlm.commands.leaderboard", "tabulate evaluation runs"),
    "ask": ("depthlm.commands.ask", "ask how far a point in your photo is"),
    "chat": ("depthlm.commands.chat", "talk about distances in a photo in the terminal"),
    "app": ("depthlm.commands.app", "web page: click a point, ask how far it is"),
    "demo": ("depthlm.commands.demo", "synthetic data + tiny model: train, evaluate, report"),
    "tasks": ("depthlm.commands.tasks", "list the questions depthlm can ask and the records that feed them"),
    "dense": ("depthlm.commands.dense", "a photo -> dense depth map (PNG/NPY), preview and PLY point cloud"),
    "merge": ("depthlm.commands.merge", "merge a LoRA adapter into its base: a full model folder"),
    "sft": ("depthlm.commands.sft", "fine-tune with the SFT recipe (YAML + flags; accelerate flags launch)"),
    "grpo": (
        "depthlm.commands.grpo",
        "fine-tune with the GRPO recipe (YAML + flags; accelerate flags launch)",
    ),
}


def main(argv: list[str] | None = None) -> int:
    import argparse

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="depthlm", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    if hasattr(module, "run_argv"):  # commands with a parser of their own (the TRL recipes: YAML + flags)
        return int(module.run_argv(argv[1:]) or 0)
    cmd_parser = argparse.ArgumentParser(prog=f"depthlm {name}", description=COMMANDS[name][1])
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except DepthLMError as err:  # user-facing problems: one clear line, no traceback
        print(f"depthlm {name}: error: {err}", file=sys.stderr)
        return 2


from depthlm.errors import DepthLMError  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
