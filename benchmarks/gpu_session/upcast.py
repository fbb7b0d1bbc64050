"""Restores model.safetensors in float32 from the float16 copy that fits the device tool's transfer limit."""

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

directory = Path(sys.argv[1])
tensors = load_file(directory / "model.fp16.safetensors")
restored = {name: (t.to(torch.float32) if t.is_floating_point() else t).contiguous() for name, t in tensors.items()}
save_file(restored, directory / "model.safetensors", metadata={"format": "pt"})
(directory / "model.fp16.safetensors").unlink()
print("model restored:", sum(t.numel() for t in restored.values()), "parameters")
