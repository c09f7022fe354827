"""The knowledge base on disk: store (open, read), build, embeddings, FAISS index, export."""
