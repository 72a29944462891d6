"""Item representations: text renderings and embeddings shared by users and recommenders."""
