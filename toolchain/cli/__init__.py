"""The ``nirdeploy`` command line (top layer): ``toolchain.cli.main`` builds the parser,
``toolchain.cli.commands`` holds one module per command family."""
