"""Pure decision logic: no clocks, no randomness, no I/O. Time and samples come in as arguments."""
