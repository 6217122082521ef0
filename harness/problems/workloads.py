"""Suites of GroupNorm shapes taken from real models, each with its source.

All use the models' own group counts and eps, random per-channel affine, two seeds.

* ``sd-unet``: Stable Diffusion 1.5 UNet (diffusers ``UNet2DConditionModel``,
  block_out_channels 320/640/1280/1280, ``norm_num_groups=32``, resnets eps 1e-5,
  attention blocks eps 1e-6) at 512x512 (latent 64x64), batch 2 (classifier-free
  guidance), float16; the first stage of SDXL at 1024x1024 (latent 128x128);
  two shapes also channels-last, as SD pipelines run on GPUs.
* ``sd-vae``: Stable Diffusion's VAE (``AutoencoderKL``, 32 groups, eps 1e-6) at 512x512,
  batch 1: encoder and decoder stages, float16, plus the largest decoder stages in
  float32 (VAEs are often kept in float32 because float16 overflows there).
* ``kernelbench``: KernelBench level 1 problem 35 ``GroupNorm_``: the current version
  (batch 112, 64 features, 8 groups, 512x512, ``torch.rand`` inputs: 1.9e9 elements,
  verified on a sample of whole groups, skipped where memory is short) and the original
  release (batch 16, 256x256, ``torch.randn``), float32, default affine.
* ``audio-1d``: wav2vec2's feature encoder (HF ``Wav2Vec2GroupNormConvLayer``, fairseq
  ``ConvFeatureExtractionModel`` mode "default"): ``GroupNorm(512, 512)`` after the first
  conv (kernel 10, stride 5) on 16 kHz audio: 1 s (3199 frames), 5 s x 4, 10 s x 2;
  float32 and float16.
* ``volumetric-3d``: MONAI ``SegResNet`` (init_filters=16, norm GROUP with 8 groups) on
  128^3 crops (BraTS), the four encoder levels, batch 1, float32 and float16.
"""

from __future__ import annotations

import itertools

from .cases import Case

SEEDS = (0, 1)

SD_UNET = [  # (channels, side, eps)
    (320, 64, 1e-5), (320, 64, 1e-6), (320, 32, 1e-5), (640, 32, 1e-5), (640, 32, 1e-6),
    (640, 16, 1e-5), (1280, 16, 1e-5), (1280, 16, 1e-6), (1280, 8, 1e-5), (2560, 8, 1e-5),
    (2560, 16, 1e-5), (1920, 16, 1e-5), (1920, 32, 1e-5), (1280, 32, 1e-5), (960, 32, 1e-5),
    (960, 64, 1e-5), (640, 64, 1e-5),
]
SDXL_UNET = [(320, 128, 1e-5)]  # its 640@64 and 1280@32 stages are SD 1.5 shapes too
SD_VAE = [(512, 64), (512, 128), (512, 256), (256, 256), (256, 512), (128, 512), (128, 256), (256, 128)]
SD_VAE_FLOAT32 = [(512, 128), (128, 512)]
AUDIO = [(1, 3199), (4, 15999), (2, 31999)]  # (batch, frames) for 1 s, 5 s, 10 s at 16 kHz
SEGRESNET = [(16, 128), (32, 64), (64, 32), (128, 16)]


def sd_unet() -> list[Case]:
    cases = []
    for (channels, side, eps), seed in itertools.product(SD_UNET + SDXL_UNET, SEEDS):
        cases.append(Case((2, channels, side, side), 32, "float16", eps=eps, seed=seed))
    for (channels, side, eps), seed in itertools.product([(320, 64, 1e-5), (1280, 16, 1e-5)], SEEDS):
        cases.append(Case((2, channels, side, side), 32, "float16", "channels_last", eps=eps, seed=seed))
    return cases


def sd_vae() -> list[Case]:
    cases = [
        Case((1, c, s, s), 32, "float16", eps=1e-6, seed=seed) for (c, s), seed in itertools.product(SD_VAE, SEEDS)
    ]
    cases += [
        Case((1, c, s, s), 32, "float32", eps=1e-6, seed=seed)
        for (c, s), seed in itertools.product(SD_VAE_FLOAT32, SEEDS)
    ]
    return cases


def kernelbench() -> list[Case]:
    return [Case((16, 64, 256, 256), 8, "float32", affine="default", seed=seed) for seed in SEEDS] + [
        Case((112, 64, 512, 512), 8, "float32", distribution="rand", affine="default", seed=seed) for seed in SEEDS
    ]


def audio_1d() -> list[Case]:
    return [
        Case((batch, 512, frames), 512, dtype, seed=seed)
        for (batch, frames), dtype, seed in itertools.product(AUDIO, ("float32", "float16"), SEEDS)
    ]


def volumetric_3d() -> list[Case]:
    return [
        Case((1, channels, side, side, side), 8, dtype, seed=seed)
        for (channels, side), dtype, seed in itertools.product(SEGRESNET, ("float32", "float16"), SEEDS)
    ]


WORKLOADS = {
    "sd-unet": sd_unet,
    "sd-vae": sd_vae,
    "kernelbench": kernelbench,
    "audio-1d": audio_1d,
    "volumetric-3d": volumetric_3d,
}
