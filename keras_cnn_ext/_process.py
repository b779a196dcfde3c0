"""Facts about the processes of this host, for the writers that take over what a killed
process left behind (run-folder locks, export and conversion temporaries). Standard library
only: imported by modules that must stay cheap to import."""

import os


def pid_alive(pid):
    """Whether process `pid` runs on this host (a pid that is not a number: no).

    >>> pid_alive(os.getpid()), pid_alive("not a pid")
    (True, False)
    """
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError, OverflowError):
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
