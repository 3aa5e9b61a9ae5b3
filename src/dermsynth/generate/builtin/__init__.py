"""The built-in generator: a small class-conditional diffusion model (diffusers' UNet and DDPM/DDIM
schedulers) that trains on a CPU. Its config, network, training, sampling and precision rule live here;
generate/backends/builtin.py adapts it to the generator-backend interface."""
