"""Reports of a run: plots, the Perfetto timeline, comparisons and the HTML page. They read a run's
summary (the JSON of ``kinsim run``) or its records, never the engine's state."""
