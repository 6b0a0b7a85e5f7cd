"""Beam entry point: `python beam_runner.py --input ... --out ... [--runner DataflowRunner --project ...]`.

Takes the same options as `webtext run` (ours and Beam's own PipelineOptions in one argv), builds the pipeline
with pipeline.build.build and runs it (FnApiRunner, Beam's local portable runner, unless --runner says otherwise).
"""
import sys

from webtext import cmd_run, _quiet_imports

if __name__ == "__main__":
    _quiet_imports()
    sys.exit(cmd_run(sys.argv[1:]))
