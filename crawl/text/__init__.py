"""Pages -> documents: main text (extract.py, plain functions), run on a process pool under a per-page alarm
(pool.py) by the Beam stage ExtractDocuments (transform.py); then the quality rules (quality.py). In `webtext run`
the quality rules and the rest of the per-document work run inside the same pool (`then=`, see
pipeline/per_document.py); FilterQuality is the same rules as a Beam stage of their own."""
