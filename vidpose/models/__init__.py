"""Pose models: backbone, temporal fusion, feature pyramid, heads, the estimator.

Build one from a config with ``vidpose.models.build.build_model``.
"""
