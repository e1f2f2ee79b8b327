"""Helpers shared by the tests and the benchmarks (not part of the product).

Nothing under src/plantstream outside this package may import it."""
