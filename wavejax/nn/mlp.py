"""Position-wise GELU MLP, D -> ratio*D -> D: the trunk's default mixer."""

import flax.linen as nn

from wavejax.nn import init
from wavejax.nn.registry import register_mixer


class MLP(nn.Module):
    config: object

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        c = self.config
        dtype = init.dtype_of(c.dtype)
        h = init.dense(c.mlp_ratio * c.d_model, ("embed", "mlp"), use_bias=c.use_bias, dtype=dtype, kernel_init=init.weights(c),
                       name="up")(x)
        h = nn.gelu(h, approximate=False)
        y = init.dense(c.d_model, ("mlp", "embed"), use_bias=c.use_bias, dtype=dtype, kernel_init=init.residual_out(c),
                       name="down")(h)
        return nn.Dropout(c.dropout)(y, deterministic=deterministic)


@register_mixer("mlp")
def mlp_mixer(config, name=None):
    return MLP(config, name=name)
