"""Reading corpora: where they may live, how records are read strictly, fingerprints."""
