"""The model size ladder by name, without importing torch (the API validates sizes)."""

SIZES: dict[str, tuple[int, int, int]] = {
    "nano": (64, 2, 4),
    "micro": (128, 4, 4),
    "tiny": (256, 6, 8),
    "small": (512, 8, 8),
    "base": (768, 14, 12),
}
"""name -> (n_embd, n_layer, n_head)."""
