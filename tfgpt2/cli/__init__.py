"""The `tfgpt2` command line: `main` parses and dispatches; one module per subcommand."""
