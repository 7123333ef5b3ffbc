"""vidpose: video human pose estimation with a spatio-temporal heatmap diffusion core."""

__version__ = "0.1.0"
