"""PyTorch reference implementation of PixelLLM.

One module per component, named as in DESIGN.md; the same names are used by the weights
(model.safetensors prefixes), the native runtime (native/model/) and the docs.
"""
