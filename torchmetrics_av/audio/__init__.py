"""Metrics on audio alone: FD_PaSST, KL_PaSST, CLAP score, Audiobox Aesthetics, speech WER."""
