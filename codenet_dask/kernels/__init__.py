"""What runs on a worker: coded blocks, products, checks, decode, verify, repair, update, scrub (pure numpy)."""
