"""Tables, texts and figures the pages show, built from mind_core results (no computation of their own)."""
