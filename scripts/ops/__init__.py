"""Operations: token/cost projections and batch backfill."""
