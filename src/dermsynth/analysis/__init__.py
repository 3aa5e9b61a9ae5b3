"""Statistics, audits, figures and the report."""
