"""Side-by-side throughput and cost benchmark of the sink (`make bench`); never a test."""
