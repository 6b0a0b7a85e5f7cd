"""One forkserver per process, shared by the extraction pool and the fetch processes, with what both import.

Workers fork from a clean single-threaded server (safe beside Beam's threads, cheap to replace), and a module the
server imported is one the worker need not import again (~1.7 s for the fetch's requests/urllib3 stack, ~1 s for
trafilatura). The server starts once per process with the list it has then, so every user declares its modules
when it is imported (`preload(...)`), before either starts the server. Like spawn, the server imports the caller's
`__main__`: a script that starts a run needs the usual `if __name__ == "__main__":` guard.
A run on the local runner starts the server itself (`start()`) before it builds the pipeline, so the server's
imports (~2 s) run on another core while this process builds the job and reads the dump, not when the first
worker is wanted.
"""
import multiprocessing
import threading

_MODULES: list = ["core.forkserver_init"]   # first: the server ignores Ctrl-C during the imports after it
_LOCK = threading.Lock()


def preload(*modules: str) -> None:
    """Modules the server should import, if it has not started yet."""
    with _LOCK:
        _MODULES.extend(m for m in modules if m not in _MODULES)


def context(*modules: str):
    """The forkserver context, with `modules` added to what a server started from now on imports."""
    preload(*modules)
    ctx = multiprocessing.get_context("forkserver")
    with _LOCK:
        ctx.set_forkserver_preload(list(_MODULES))
    return ctx


def start() -> None:
    """Start the server now with the modules declared so far, unless it runs already. It returns at once: the
    server imports on its own, and it ends when this process does (it holds the read end of a pipe of ours)."""
    from multiprocessing import forkserver as server
    context()
    server.ensure_running()
