"""Imported first by the forkserver (core/forkserver.py), never by the run's own process.

Ctrl-C goes to every process of the terminal's group. The forkserver ignores SIGINT only once its preload imports
are done, so a Ctrl-C during them printed a KeyboardInterrupt traceback under the run's one-line message. The run
handles Ctrl-C and ends the forkserver (and its workers) itself, so the forkserver ignores it from the start.
"""
import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
