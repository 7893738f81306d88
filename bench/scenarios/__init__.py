"""The benchmark scenarios of issue 8; each adds rows and goals to the report."""
