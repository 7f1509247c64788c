"""Creative intelligence as plain Python: grounded generation, moderation, near-duplicates and
fatigue. Models, embedders and vector stores come in through small interfaces."""
