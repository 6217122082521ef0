"""torch's CPU GroupNorm backward (contiguous float32): grad_x relative error against the
float64 truth grows with |mean|/std, where numba-cpu's centered backward stays at float32
roundoff. Groups of M elements, 8 x 4 groups, x = offset + N(0, 1), grad_y N(0, 1), 20 draws.
Run from anywhere: python results/cpu-2026-12-04-numba16-part3/torch_backward_offset.py"""
import pathlib, sys; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
import numpy as np, torch, backends
be = backends.get("numba-cpu")
rng = np.random.default_rng(0)
print(torch.__version__)
for M in (3, 64, 4096):
    for ratio in (1e2, 1e3, 1e4):
        et, en = [], []
        for t in range(20):
            x = (ratio + rng.standard_normal((8, 4, M))).astype(np.float32)
            gy = rng.standard_normal((8, 4, M)).astype(np.float32)
            X = torch.tensor(x, requires_grad=True)
            torch.nn.functional.group_norm(X, 4, None, None, 1e-5).backward(torch.tensor(gy))
            _, saved = be.forward_train(x, 4, None, None, 1e-5); dxn = be.backward(gy, saved)[0]
            x64 = x.astype(np.float64); g = gy.astype(np.float64)
            m = x64.mean(-1, keepdims=True); r = 1/np.sqrt(x64.var(-1, keepdims=True) + 1e-5); xh = (x64-m)*r
            dx = r*(g - g.mean(-1, keepdims=True) - xh*(g*xh).mean(-1, keepdims=True))
            et.append(np.abs(X.grad.numpy() - dx).max() / np.abs(dx).max()); en.append(np.abs(dxn - dx).max() / np.abs(dx).max())
        print(f"group {M:5d} |mean|/std {ratio:6.0e}: grad_x max rel error torch {max(et):.2e}  numba-cpu {max(en):.2e}")
