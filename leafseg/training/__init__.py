"""Training: the staged training job (train), its run folders (runs), and the recipes that rebuild
a shipped model from nothing (recipe)."""
