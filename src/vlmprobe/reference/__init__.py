"""The studies' published numbers (CSV files shipped here) beside ours."""
