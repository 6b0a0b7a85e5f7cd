"""`webtext demo`: a generated web with planted cases (web.py, sites.py), served on loopback as an HTTP proxy
(loopback.py), and the run that checks every planted case ends as it must (run.py)."""
