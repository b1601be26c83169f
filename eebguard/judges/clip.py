"""A zero-shot CLIP judge for real models, from weights the user already has on disk.

eebguard ships no CLIP weights. Point ``path`` at a local ``CLIPModel`` folder (safetensors only, no
network) and name the concepts to score; each is scored against the others and a neutral class.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from eebguard.judges.base import JUDGES, Judge

_MEAN = (0.48145466, 0.4578275, 0.40821073)
_STD = (0.26862954, 0.26130258, 0.27577711)


@JUDGES.register
class ClipJudge(Judge):
    """Zero-shot CLIP judge over user-named concepts (user-supplied local weights)."""

    name = "clip"
    differentiable = True
    exclusive = True

    def __init__(self, path: str, concepts: Sequence[str], template: str = "a photo of {}", neutral: str = "a photo"):
        from transformers import CLIPModel, CLIPTokenizer

        if not concepts:
            raise ValueError("the CLIP judge needs at least one concept name")
        self.model = CLIPModel.from_pretrained(path, local_files_only=True, use_safetensors=True).eval()
        tok = CLIPTokenizer.from_pretrained(path, local_files_only=True)
        self.concepts = tuple(concepts) + ("none",)
        texts = [template.format(c) for c in concepts] + [neutral]
        ids = tok(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            emb = self.model.get_text_features(**ids)
            emb = emb.pooler_output if hasattr(emb, "pooler_output") else emb
        self.text = F.normalize(emb, dim=-1)
        self.size = self.model.config.vision_config.image_size

    def logits_torch(self, images: torch.Tensor) -> torch.Tensor:
        dev = images.device  # the judge follows the generations (the reference-free search runs on the GPU)
        if self.text.device != dev:
            self.model.to(dev)
            self.text = self.text.to(dev)
        x = (images.float() + 1) / 2
        x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False)
        x = (x - torch.tensor(_MEAN, device=dev).view(1, 3, 1, 1)) / torch.tensor(_STD, device=dev).view(1, 3, 1, 1)
        feats = self.model.get_image_features(pixel_values=x)
        feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats
        return self.model.logit_scale.exp() * F.normalize(feats, dim=-1) @ self.text.T

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        return torch.softmax(self.logits_torch(images), dim=1).cpu().numpy()
