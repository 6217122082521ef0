"""How cases are run: worker processes per (backend, device) and their tasks, the local
sweep and the Ray cluster sweep, timing, and the memory a case needs."""
