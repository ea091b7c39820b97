"""Analysis of finished experiments: what masks hide, rescoring, when fine-tunes leave chance."""
