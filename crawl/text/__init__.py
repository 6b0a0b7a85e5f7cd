"""Pages -> documents: main text (extract.py, plain functions), run on a process pool under a per-page alarm
(pool.py) by the Beam stage ExtractDocuments (transform.py); then the quality rules (quality.py)."""
