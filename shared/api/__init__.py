"""HTTP and queue plumbing shared by the four handlers (Powertools Event Handler and Batch)."""
