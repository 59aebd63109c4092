"""One module per REST resource; each defines its calls once and a sync and an async class."""
