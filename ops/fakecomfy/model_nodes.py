"""Model nodes, simulated: a text-to-image graph that runs without weights.

A real server without weights lists CheckpointLoaderSimple with an empty combo, so
any graph naming a checkpoint fails validation (``value_not_in_list``). The fake's
combo lists the checkpoints of its model catalog, and a graph naming one of them
runs: the loader hands out references, KSampler reports one progress step per
sampling step with a JPEG preview (as a real server with previews enabled does), and
VAEDecode draws a deterministic picture from the seed and the prompts. This is
what model-aware routing needs: a server answers for exactly the models it has.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ops.fakecomfy.nodes import MAX_RESOLUTION, NodeResult, NodeType, RunContext, int_spec

__all__ = ["model_nodes"]

SAMPLERS = [
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "gradient_estimation",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "sa_solver",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
]
SCHEDULERS = [
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
]


@dataclass(frozen=True)
class Weights:
    """What a loaded checkpoint hands out: MODEL, CLIP and VAE refer to it by name."""

    kind: str
    checkpoint: str


@dataclass(frozen=True)
class Conditioning:
    text: str
    checkpoint: str


@dataclass(frozen=True)
class Latent:
    width: int
    height: int
    batch_size: int
    seed: str = ""


def _need(value: Any, kind: type, name: str) -> Any:
    if not isinstance(value, kind):
        raise TypeError(f"{name}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _load_checkpoint(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    name = inputs["ckpt_name"]
    if name not in ctx.env.models.get("checkpoints", ()):
        raise FileNotFoundError(f"Model in folder 'checkpoints' with filename '{name}' not found.")
    return NodeResult(tuple(Weights(kind, name) for kind in ("MODEL", "CLIP", "VAE")))


def _encode(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    clip = _need(inputs["clip"], Weights, "clip")
    return NodeResult((Conditioning(str(inputs["text"]), clip.checkpoint),))


def _empty_latent(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    latent = Latent(inputs["width"] // 8, inputs["height"] // 8, inputs["batch_size"])
    return NodeResult((latent,))


def _picture(seed: str, width: int, height: int, index: int) -> Image.Image:
    digest = hashlib.sha256(f"{seed}/{index}".encode()).digest()
    base = Image.new("RGB", (width, height), (digest[0], digest[1], digest[2]))
    shade = Image.linear_gradient("L").rotate(digest[3] * 360 / 256).resize((width, height))
    tint = Image.new("RGB", (width, height), (digest[4], digest[5], digest[6]))
    return Image.composite(tint, base, shade)


def _sample(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    model = _need(inputs["model"], Weights, "model")
    positive = _need(inputs["positive"], Conditioning, "positive")
    negative = _need(inputs["negative"], Conditioning, "negative")
    latent = _need(inputs["latent_image"], Latent, "latent_image")
    key = "|".join(
        str(part)
        for part in (
            model.checkpoint,
            inputs["seed"],
            inputs["steps"],
            inputs["cfg"],
            inputs["sampler_name"],
            inputs["scheduler"],
            inputs["denoise"],
            positive.text,
            negative.text,
            latent.seed,
        )
    )
    seed = hashlib.sha256(key.encode()).hexdigest()
    steps = inputs["steps"]
    size = (max(1, min(latent.width, 64)), max(1, min(latent.height, 64)))
    for step in range(steps):
        preview = _picture(f"{seed}/{step}", size[0], size[1], 0)
        ctx.progress(step + 1, steps, ("JPEG", preview))
    return NodeResult((Latent(latent.width, latent.height, latent.batch_size, seed),))


def _decode(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    latent = _need(inputs["samples"], Latent, "samples")
    _need(inputs["vae"], Weights, "vae")
    width, height = max(8, latent.width * 8), max(8, latent.height * 8)
    return NodeResult(
        ([_picture(latent.seed, width, height, i) for i in range(latent.batch_size)],)
    )


def model_nodes() -> list[NodeType]:
    """Loader, text encoder, empty latent, sampler and decoder."""
    return [
        NodeType(
            "CheckpointLoaderSimple",
            "Load Checkpoint",
            "loaders",
            lambda env: {
                "required": {
                    "ckpt_name": [
                        list(env.models.get("checkpoints", ())),
                        {"tooltip": "The name of the checkpoint (model) to load."},
                    ]
                }
            },
            ("MODEL", "CLIP", "VAE"),
            _load_checkpoint,
            description="Loads a diffusion model checkpoint, diffusion models are used to "
            "denoise latents.",
        ),
        NodeType(
            "CLIPTextEncode",
            "CLIP Text Encode (Prompt)",
            "conditioning",
            lambda env: {
                "required": {
                    "text": ["STRING", {"multiline": True, "dynamicPrompts": True}],
                    "clip": ["CLIP"],
                }
            },
            ("CONDITIONING",),
            _encode,
        ),
        NodeType(
            "EmptyLatentImage",
            "Empty Latent Image",
            "latent",
            lambda env: {
                "required": {
                    "width": ["INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8}],
                    "height": [
                        "INT",
                        {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8},
                    ],
                    "batch_size": int_spec(1, 1, 4096),
                }
            },
            ("LATENT",),
            _empty_latent,
        ),
        NodeType(
            "KSampler",
            "KSampler",
            "sampling",
            lambda env: {
                "required": {
                    "model": ["MODEL"],
                    "seed": int_spec(0, 0, 0xFFFFFFFFFFFFFFFF, control_after_generate=True),
                    "steps": int_spec(20, 1, 10000),
                    "cfg": [
                        "FLOAT",
                        {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01},
                    ],
                    "sampler_name": [list(SAMPLERS)],
                    "scheduler": [list(SCHEDULERS)],
                    "positive": ["CONDITIONING"],
                    "negative": ["CONDITIONING"],
                    "latent_image": ["LATENT"],
                    "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}],
                }
            },
            ("LATENT",),
            _sample,
            reports_progress=True,
        ),
        NodeType(
            "VAEDecode",
            "VAE Decode",
            "latent",
            lambda env: {"required": {"samples": ["LATENT"], "vae": ["VAE"]}},
            ("IMAGE",),
            _decode,
        ),
    ]
