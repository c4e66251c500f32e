"""CLI subcommands beyond the core ones in toolchain/cli/main.py; each module defines register(subparsers)."""
