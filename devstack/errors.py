"""The one exception the local stack raises for problems a developer has to fix."""


class StackError(RuntimeError):
    """A component of the local stack could not be fetched, started or stopped.

    The message is a single line that says what failed and where to look (log file, last log
    lines), so that it is readable as the last line of a CLI run or a pytest error.
    """


class StartCancelled(StackError):
    """A start given up because another component failed or the user interrupted it."""
