"""The contract between pipeline and trainer: GPT-2 tokens (tokenize.py) in Arrow shards + manifest.json
(format.py: schema, writing, reading, verify), written by the Beam stage WriteShards (write.py); `webtext shards`
(cli.py, browse.py, export.py) to look inside."""
