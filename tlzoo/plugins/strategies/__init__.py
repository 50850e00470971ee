"""Built-in strategies: ``feature-extraction`` and ``fine-tune`` (``ulmfit`` lives with its backbone)."""
