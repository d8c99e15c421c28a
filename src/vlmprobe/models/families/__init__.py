"""Model families: every module in this package registers one family on import, so adding a family is adding one file."""
