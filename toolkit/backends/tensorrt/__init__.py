"""NVIDIA TensorRT (T4 and any other GPU): engines built in the target's image on the GPU that runs them."""
