"""``kinsim regress``: guard simulated figures against a committed baseline."""
