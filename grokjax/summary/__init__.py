"""Layer 4, summary: from logged counts to the tables' rows (final metrics, phases, cells of the
phase diagram, the sweep file's claims, the terminal report). Pandas and numpy, no device work."""
