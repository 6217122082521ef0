"""A case: one frozen GroupNorm problem, with one printable id used everywhere.

The id names everything that decides the inputs and the expected output except the
device (so results from cpu and cuda compare by id)::

    2x320x64x64-g32-float16-channels_last-normal-s0
    2x24x6x6-g6-float16-contiguous-normal-s1-eps0.0-affine_none-wfloat32
    2x32x12x10-g8-float32-contiguous-normal-s0-train-gy_constant
    2x12x5x7-g3-float16-contiguous-normal-s1-backward-gy_normal-gylayout_channels_last

Fixed fields first (shape, groups, dtype, layout, distribution, seed), then the pass
when it is not the forward (``backward`` or ``train``) with the incoming gradient's
distribution (``gy_NAME``), then only the fields that differ from their defaults (eps,
affine, parameter dtype, grad_y's layout when it is not x's). A forward case's id is the
same as before passes existed. The id is the test id, the results row key, the asv
parameter and the CLI's ``--case``; :meth:`Case.from_id` parses it back.

**Passes.** ``forward`` judges y; ``backward`` runs ``forward_train`` then
``backward`` and judges grad_x, grad_weight and grad_bias; ``train`` judges all four
(see :func:`harness.oracle.checks.run_case`).
"""

from __future__ import annotations

import dataclasses
import math
import re

from backends.base import DEVICES, LAYOUTS
from backends.dtypes import DTYPES, HALF_DTYPES
from backends.errors import InvalidArgumentError
from harness.records.results import PASSES

AFFINES = ("none", "default", "random", "zero_weight")
DEFAULT_EPS = 1e-5
DEFAULT_AFFINE = "random"
_TOKEN_SPLIT = re.compile(r"-(?=[a-z])")  # eps1e-05 keeps its minus: split before letters only


@dataclasses.dataclass(frozen=True)
class Case:
    """One GroupNorm problem.

    Attributes:
        shape: (N, C, *) with rank >= 2.
        num_groups: divides C.
        dtype: input (and output) dtype name.
        layout: ``contiguous``, ``channels_last`` (rank >= 3) or ``strided`` (every other
            element of a buffer twice as long in the last dimension).
        distribution: name of an input distribution in :mod:`harness.problems.inputs`.
        seed: seeds the input generator; inputs are a function of the case alone.
        eps: added to the variance inside the square root.
        affine: ``none`` (no weight/bias), ``default`` (ones and zeros, as
            ``nn.GroupNorm`` initializes them), ``random`` (per-channel values) or
            ``zero_weight`` (weight 0, random bias: a backward that recovers xhat from
            y divides by the weight).
        param_dtype: dtype of weight and bias; None means the input dtype (float32 is
            the other choice, for half inputs).
        pass_: ``forward``, ``backward`` or ``train`` (``pass`` is a Python keyword).
        grad_distribution: the incoming gradient's distribution
            (:data:`harness.problems.inputs.GRAD_DISTRIBUTIONS`); backward and train only.
        grad_layout: grad_y's memory layout; None means x's.
        device: where the backend runs; not part of the id.
    """

    shape: tuple[int, ...]
    num_groups: int
    dtype: str = "float32"
    layout: str = "contiguous"
    distribution: str = "normal"
    seed: int = 0
    eps: float = DEFAULT_EPS
    affine: str = DEFAULT_AFFINE
    param_dtype: str | None = None
    pass_: str = "forward"
    grad_distribution: str = "normal"
    grad_layout: str | None = None
    device: str = "cpu"

    def __post_init__(self):
        from .inputs import DISTRIBUTIONS, GRAD_DISTRIBUTIONS, UNREPRESENTABLE, has_zero_variance, is_distribution

        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "eps", float(self.eps))
        shape = self.shape
        if len(shape) < 2 or any(s < 0 for s in shape):
            raise InvalidArgumentError(f"shape must be (N, C, *) of rank >= 2 with sizes >= 0; got {shape}")
        if self.num_groups <= 0 or shape[1] % self.num_groups:
            raise InvalidArgumentError(
                f"num_groups must be a positive divisor of C={shape[1]}; got {self.num_groups}"
            )
        checks = (
            ("dtype", self.dtype, DTYPES),
            ("layout", self.layout, LAYOUTS),
            ("distribution", self.distribution,
             tuple(DISTRIBUTIONS) + ("p_o{offset}_s{scale}_c{spread}_k{outliers}_z{constant}",)),
            ("affine", self.affine, AFFINES),
            ("device", self.device, DEVICES),
            ("pass_", self.pass_, PASSES),
            ("grad_distribution", self.grad_distribution, tuple(GRAD_DISTRIBUTIONS)),
            ("grad_layout", self.grad_layout, LAYOUTS + (None,)),
        )
        for field, value, allowed in checks:
            if value not in allowed and not (field == "distribution" and is_distribution(value)):
                raise InvalidArgumentError(f"{field} must be one of {', '.join(map(str, allowed))}; got {value!r}")
        if self.dtype in UNREPRESENTABLE.get(self.distribution, ()):
            raise InvalidArgumentError(f"the {self.distribution} distribution cannot be held in {self.dtype}")
        if shape[0] * (shape[1] // self.num_groups) * math.prod(shape[2:]) == 1:
            raise InvalidArgumentError(  # torch.nn.functional.group_norm's _verify_batch_size
                f"shape {shape} with num_groups={self.num_groups} has one value per group in the whole batch: "
                "GroupNorm refuses it (Expected more than 1 value per channel)")
        if "channels_last" in (self.layout, self.grad_layout) and len(shape) < 3:
            raise InvalidArgumentError(f"the channels_last layout needs rank >= 3; got shape {shape}")
        if self.grad_layout == self.layout:
            object.__setattr__(self, "grad_layout", None)
        if self.pass_ == "forward" and (self.grad_distribution != "normal" or self.grad_layout is not None):
            raise InvalidArgumentError(
                "grad_distribution and grad_layout describe the incoming gradient of the backward and "
                f"train passes; the forward pass has none (got {self.grad_distribution!r}, {self.grad_layout!r})")
        if self.param_dtype is not None:
            if self.param_dtype == self.dtype:
                object.__setattr__(self, "param_dtype", None)
            elif not (self.dtype in HALF_DTYPES and self.param_dtype == "float32"):
                raise InvalidArgumentError(
                    f"param_dtype must be None, {self.dtype!r} or (for half inputs) 'float32'; "
                    f"got {self.param_dtype!r}"
                )
        if self.eps < 0 or not math.isfinite(self.eps):
            raise InvalidArgumentError(f"eps must be a finite number >= 0; got {self.eps}")
        if self.eps == 0 and (self.group_size == 1 or has_zero_variance(self.distribution)):
            raise InvalidArgumentError(
                f"eps=0 with zero-variance groups ({self.distribution}, group size "
                f"{self.group_size}) has no defined answer (0/0)"
            )

    # -- derived sizes ---------------------------------------------------------------------

    @property
    def group_size(self) -> int:
        """Elements in one (sample, group)."""
        return self.shape[1] // self.num_groups * math.prod(self.shape[2:])

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def id(self) -> str:
        tokens = [
            "x".join(str(s) for s in self.shape),
            f"g{self.num_groups}",
            self.dtype,
            self.layout,
            self.distribution,
            f"s{self.seed}",
        ]
        if self.pass_ != "forward":
            tokens += [self.pass_, f"gy_{self.grad_distribution}"]
        if self.eps != DEFAULT_EPS:
            tokens.append(f"eps{self.eps!r}")
        if self.affine != DEFAULT_AFFINE:
            tokens.append(f"affine_{self.affine}")
        if self.param_dtype is not None:
            tokens.append(f"w{self.param_dtype}")
        if self.grad_layout is not None:
            tokens.append(f"gylayout_{self.grad_layout}")
        return "-".join(tokens)

    def __str__(self) -> str:
        return self.id

    def on(self, device: str) -> Case:
        """The same case on another device."""
        return dataclasses.replace(self, device=device)

    def with_pass(self, pass_: str, grad_distribution: str = "normal", grad_layout: str | None = None) -> Case:
        """The same problem in another pass (forward drops the gradient's fields)."""
        if pass_ == "forward":
            return dataclasses.replace(self, pass_=pass_, grad_distribution="normal", grad_layout=None)
        return dataclasses.replace(self, pass_=pass_, grad_distribution=grad_distribution, grad_layout=grad_layout)

    @property
    def forward(self) -> Case:
        """This problem's forward case (the one a forward-only result row is keyed by)."""
        return self.with_pass("forward")

    @classmethod
    def from_id(cls, case_id: str, device: str = "cpu") -> Case:
        """Parse an id made by :attr:`id` (raises InvalidArgumentError saying what is wrong)."""
        tokens = _TOKEN_SPLIT.split(case_id.strip())
        form = ("SHAPE-gGROUPS-DTYPE-LAYOUT-DISTRIBUTION-sSEED[-backward|-train-gy_GRAD]"
                "[-epsEPS][-affine_KIND][-wDTYPE][-gylayout_LAYOUT] "
                "(list a suite's ids with: gnbench cases --suite NAME)")
        if len(tokens) < 6:
            raise InvalidArgumentError(f"case id {case_id!r} does not have the form {form}")
        shape_text, groups, dtype, layout, distribution, seed = tokens[:6]
        try:
            shape = tuple(int(s) for s in shape_text.split("x"))
            if not (groups.startswith("g") and seed.startswith("s")):
                raise ValueError
            fields = dict(
                shape=shape,
                num_groups=int(groups[1:]),
                dtype=dtype,
                layout=layout,
                distribution=distribution,
                seed=int(seed[1:]),
                device=device,
            )
            for token in tokens[6:]:
                if token in PASSES:
                    fields["pass_"] = token
                elif token.startswith("gylayout_"):
                    fields["grad_layout"] = token[len("gylayout_"):]
                elif token.startswith("gy_"):
                    fields["grad_distribution"] = token[len("gy_"):]
                elif token.startswith("eps"):
                    fields["eps"] = float(token[3:])
                elif token.startswith("affine_"):
                    fields["affine"] = token[len("affine_"):]
                elif token.startswith("w"):
                    fields["param_dtype"] = token[1:]
                else:
                    raise ValueError
        except ValueError:
            raise InvalidArgumentError(f"case id {case_id!r} does not have the form {form}") from None
        if fields.get("pass_", "forward") != "forward" and "grad_distribution" not in fields:
            raise InvalidArgumentError(f"case id {case_id!r}: a {fields['pass_']} case names its gradient (gy_NAME)")
        return cls(**fields)
