"""What ``forward_train`` hands to ``backward`` (the contract's opaque residuals)."""


class Saved:
    """What ``forward_train`` hands to ``backward``: the backend's own residuals
    (``residuals``), and the forward's x shape and dtype, and whether it had a weight and
    a bias (for validating grad_y and shaping the answer). Opaque to callers."""

    __slots__ = ("residuals", "shape", "dtype", "has_weight", "has_bias")

    def __init__(self, residuals, shape, dtype: str, has_weight: bool, has_bias: bool):
        self.residuals, self.shape, self.dtype = residuals, tuple(shape), dtype
        self.has_weight, self.has_bias = has_weight, has_bias
