"""CLI subcommands beyond the core ones in toolchain/cli.py; each module defines register(subparsers)."""
