"""Privacy primitives shared by the simulator, staging and tests: consent strings and hashing."""
