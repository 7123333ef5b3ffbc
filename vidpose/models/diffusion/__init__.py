"""Heatmap diffusion: the process (schedule), the sampler and the denoiser."""

from vidpose.models.diffusion.decoder import DenoiserOutput, HeatmapDenoiser
from vidpose.models.diffusion.sampler import (
    NoiseSource,
    argmax_keypoints,
    ddim_sample,
    ddim_sigma,
    ddim_step,
    ddim_timesteps,
)
from vidpose.models.diffusion.schedule import GaussianDiffusion, cosine_betas, linear_betas

__all__ = [
    "DenoiserOutput",
    "GaussianDiffusion",
    "HeatmapDenoiser",
    "NoiseSource",
    "argmax_keypoints",
    "cosine_betas",
    "ddim_sample",
    "ddim_sigma",
    "ddim_step",
    "ddim_timesteps",
    "linear_betas",
]
