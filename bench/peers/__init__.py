"""The systems under test, one module each; ``harness.PEERS`` names them."""
