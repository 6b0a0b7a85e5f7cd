"""Child-process settings through Linux's prctl(2); elsewhere (or without libc) they do nothing."""
import signal
import sys

PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15


def _prctl(option: int, arg) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def die_with_parent() -> None:
    """SIGKILL this process when the process that started it dies."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def name_process(name: bytes) -> None:
    """What ps and top show for this process (at most 15 bytes)."""
    _prctl(PR_SET_NAME, name)
