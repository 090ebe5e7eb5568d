"""Per-person preprocessing stages: ingest, landmarks, parsing, background, torso, tracking."""
