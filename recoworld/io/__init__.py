"""Arrow/Parquet knowledge lives here: the versioned schemas, writers and readers of runs."""
