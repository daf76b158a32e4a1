"""What lasts on disk: the home folder, the SQLite journal and its schema, and images (kept,
saved, archived, pruned). Imports only `model`."""
