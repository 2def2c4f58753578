"""The baselines of ``bench_end_to_end.py`` that need a seernet model (the pure algorithms
live in ``search/``), and the bench's store of finished runs."""
