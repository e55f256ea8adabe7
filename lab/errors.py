class LabError(Exception):
    """A problem the user can act on: printed as one line, exit code ``exit_code``."""

    exit_code = 1


class ConfigError(LabError):
    """lab.yml is wrong: nothing was started."""

    exit_code = 2


class NotUp(LabError):
    """The command needs the lab running."""

    exit_code = 2


class Interrupted(LabError):
    """Ctrl-C while bringing a lab up: what was started has been removed."""

    exit_code = 130
