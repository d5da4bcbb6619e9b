"""The `ksight` command line. Each subcommand is a module with add_arguments(parser) and
run(args) -> exit status; heavy imports happen inside run(), so startup stays fast."""
