"""Published reference numbers (from the seed guide, the CenterFace paper and chenjun2hao's port).

They appear in reports as rows marked "published", never mixed with measured rows.
"""

from __future__ import annotations

PUBLISHED: tuple[dict, ...] = (
    {"target": "paper, single scale", "precision": "fp32", "preprocess": "original size", "batch": None,
     "ap": {"easy": 0.922, "medium": 0.911, "hard": 0.782}, "images_per_s": None,
     "device": "CenterFace paper (arXiv 1911.03599)"},
    {"target": "paper, multi-scale + flip", "precision": "fp32", "batch": None,
     "ap": {"easy": 0.935, "medium": 0.924, "hard": 0.875}, "images_per_s": None,
     "device": "CenterFace paper (arXiv 1911.03599)"},
    {"target": "pytorch port", "precision": "fp32", "preprocess": "letterbox 800x800", "batch": None,
     "ap": {"easy": 0.9257, "medium": 0.9131, "hard": 0.7717}, "images_per_s": None,
     "device": "chenjun2hao/CenterFace.pytorch, the open-source port the guide used"},
    {"target": "310 (guide)", "precision": "fp16", "preprocess": "letterbox 800x800", "batch": 1,
     "ap": {"easy": 0.9191, "medium": 0.9068, "hard": 0.7426}, "images_per_s": 367.44,
     "e2e_images_per_s": 33.13, "chips": 4, "device": "Atlas 300 (Ascend 310 x4), card = 91.86 x 4"},
    {"target": "310 (guide)", "precision": "fp16", "preprocess": "letterbox 800x800", "batch": 16, "ap": None, "images_per_s": 321.41,
     "e2e_images_per_s": 31.76, "chips": 4, "device": "Atlas 300 (Ascend 310 x4), card = 80.35 x 4"},
    {"target": "310P3 (guide)", "precision": "int8", "preprocess": "letterbox 800x800", "batch": 1,
     "ap": {"easy": 0.9224, "medium": 0.9102, "hard": 0.7455}, "images_per_s": 439.9, "chips": 1,
     "device": "Ascend 310P3, ais_bench"},
    {"target": "310P3 (guide)", "precision": "int8", "preprocess": "letterbox 800x800", "batch": 16, "ap": None, "images_per_s": 369.6, "chips": 1,
     "device": "Ascend 310P3, ais_bench"},
    {"target": "t4 (guide)", "precision": "fp16", "preprocess": "800x800", "batch": 1, "ap": None, "images_per_s": 337.54, "chips": 1,
     "device": "NVIDIA T4, trtexec --fp16"},
    {"target": "t4 (guide)", "precision": "fp16", "preprocess": "800x800", "batch": 16, "ap": None, "images_per_s": 360.0, "chips": 1,
     "device": "NVIDIA T4, trtexec --fp16"},
)
