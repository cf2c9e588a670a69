"""Flax (NNX) modules of VideoCrafter2 (UNet3D + fps), its CLIP text encoder and VAE decoder."""
