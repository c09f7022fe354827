"""Filter scores: computed at build time, threshold metrics and histograms."""
