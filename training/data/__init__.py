"""Data: Kaggle Dogs vs. Cats → the seed's splits (prepare), a synthetic sample (sample), and
resumable staging to S3 (upload)."""
