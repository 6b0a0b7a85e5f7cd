"""What every stage shares and nothing of ours is imported by: the records that flow between stages and the Step
contract that counts them (records.py), whole-or-nothing files through Beam's FileSystems (files.py), settings and
the one user-error type (settings.py), retry waits (retry.py) and figures (plots.py)."""
