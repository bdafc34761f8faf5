"""What every `kubeling` subcommand shares."""

from pathlib import Path

DEFAULT_DATA_DIR = Path("/var/lib/kubeling")


class CLIError(Exception):
    """A failure reported as one line, without a traceback."""
