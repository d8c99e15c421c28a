"""The multi-label study of Sadman et al. (2025): zero-shot, linear probe and fine-tuning settings, their metrics and summary."""
