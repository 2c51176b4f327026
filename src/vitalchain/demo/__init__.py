"""The end-to-end demo: two clusters on one chain, onboarding to verification, with a report."""
