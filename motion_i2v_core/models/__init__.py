"""The networks of both stages: configs, building blocks, the inflated UNets, ControlNet and the VAE."""
