"""Detection stage: decoded batches → mining evidence (Stratum sessions, pool contacts)."""
