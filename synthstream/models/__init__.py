"""models: fitted generators, their training, and the versioned registry that stores them."""
