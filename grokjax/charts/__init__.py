"""Layer 5, charts: the only place Altair is imported (figures, the explore page, their files)."""
