"""EVM networks: local nodes, the Vyper contracts, a fast chain client and an exactly-once listener."""
