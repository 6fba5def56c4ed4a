"""Reference generators and discriminators."""
from .conditional import ConditionalMLPDiscriminator, ConditionalMLPGenerator
from .mlp import (SEED_GENERATOR_LAYERS, WIDE_GENERATOR_LAYERS, MLPDiscriminator, MLPGenerator, linear_shapes,
                  seed_discriminator, seed_generator, wide_generator)
from .public import (BatchNormGenerator, DropoutConditionalDiscriminator, bn_generator,
                     dropout_discriminator, with_running_stats)
from .sharing import SharingReport, count_parameters, shared_groups, tie_equal_shapes

__all__ = ["MLPGenerator", "MLPDiscriminator", "seed_generator", "seed_discriminator", "wide_generator",
           "linear_shapes", "SEED_GENERATOR_LAYERS", "WIDE_GENERATOR_LAYERS",
           "ConditionalMLPGenerator", "ConditionalMLPDiscriminator",
           "BatchNormGenerator", "DropoutConditionalDiscriminator", "bn_generator", "dropout_discriminator",
           "with_running_stats", "SharingReport", "count_parameters", "shared_groups", "tie_equal_shapes"]
