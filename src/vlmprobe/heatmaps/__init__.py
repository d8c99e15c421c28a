"""Grad-CAM heatmaps per (dataset, model, setting), scored against annotations, with figures and a summary."""
