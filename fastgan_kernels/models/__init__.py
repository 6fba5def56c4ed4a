"""Reference generators and discriminators."""
from .mlp import (SEED_GENERATOR_LAYERS, WIDE_GENERATOR_LAYERS, MLPDiscriminator, MLPGenerator, linear_shapes,
                  seed_discriminator, seed_generator, wide_generator)

__all__ = ["MLPGenerator", "MLPDiscriminator", "seed_generator", "seed_discriminator", "wide_generator",
           "linear_shapes", "SEED_GENERATOR_LAYERS", "WIDE_GENERATOR_LAYERS"]
