"""Composition and output: config.py (the TOML config), options.py (flags, parsed the Beam way), build.py (the
whole pipeline on one page), runner.py (run + accounting), stats.py (in = out + drops per stage), shards/ (the
tokenizer and the shard contract with the trainer), demo/ (the embedded demo web)."""
