"""One module per ``depthlm`` subcommand (see depthlm.cli.COMMANDS)."""
